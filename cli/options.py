"""Options several commands share, declared once so their wording and checks cannot drift apart."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["model_argument", "data_option", "DATA_FORMS"]

DATA_FORMS = "class folder, zip/tar(.gz/.xz) archive, .npz, or a folder with NAME_train/NAME_test files"

model_argument = click.argument(
    "model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)


def data_option(purpose: str = "Dataset", must_exist: bool = False):
    """``--data`` as ``data_path``; without ``must_exist`` the data loader reports a missing path itself."""
    return click.option(
        "--data",
        "data_path",
        required=True,
        type=click.Path(exists=must_exist, path_type=Path),
        help=f"{purpose}: {DATA_FORMS}.",
    )
