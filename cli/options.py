"""Options several commands share, declared once so their wording and checks cannot drift apart."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = [
    "model_argument",
    "data_option",
    "depth_option",
    "target_option",
    "output_option",
    "DATA_FORMS",
    "DEFAULT_DEPTH_THRESHOLD",
]

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


DEFAULT_DEPTH_THRESHOLD = 0.1

depth_option = click.option(
    "--depth",
    "depth_threshold",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    is_flag=False,
    flag_value=DEFAULT_DEPTH_THRESHOLD,
    default=None,
    help="Let the search delete residual branches: an action below this threshold "
    f"[{DEFAULT_DEPTH_THRESHOLD} when given alone] for a removable group deletes its branch "
    "(see `agmc-onnx inspect`).",
)


def target_option(
    help_text: str = "Latency target profile (execution provider, threads, batch size).", default="mobile-cpu"
):
    """``--target`` as ``target``, one of the cost module's profiles."""
    from agmc_onnx.cost import profile_names

    return click.option(
        "--target",
        type=click.Choice(profile_names()),
        default=default,
        show_default=default is not None,
        help=help_text,
    )


def output_option(help_text: str = "Where to write the model."):
    """``-o/--output`` as ``output``, a file path (written atomically, never half-written)."""
    path = click.Path(dir_okay=False, path_type=Path)
    return click.option("-o", "--output", type=path, required=True, help=help_text)
