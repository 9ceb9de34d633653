"""Fixtures: tiny image datasets in every supported format, built in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_datasets import make_archive, write_image_folder


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images")


@pytest.fixture(params=["data.zip", "data.tar", "data.tar.gz", "data.tar.xz"])
def image_archive(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    folder = write_image_folder(tmp_path / "images", suffix=".jpg")
    return make_archive(folder, tmp_path / request.param)
