"""Image datasets on disk that the loader and cache tests share."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_datasets import ARCHIVE_NAMES, make_archive, write_image_folder


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images")


@pytest.fixture(params=ARCHIVE_NAMES)
def image_archive(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return make_archive(write_image_folder(tmp_path / "images", suffix=".jpg"), tmp_path / request.param)
