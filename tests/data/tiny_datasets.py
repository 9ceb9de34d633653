"""Builders of tiny image datasets in every supported format (used by the data tests' fixtures)."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("cat", "dog", "frog")  # folder names; label = alphabetical position
IMAGES_PER_CLASS = 4
SIZE = 8
ARCHIVE_NAMES = ("data.zip", "data.tar", "data.tar.gz", "data.tar.xz")


def class_color(label: int) -> tuple[int, int, int]:
    """Class c is bright in channel c, so its pixels identify the label."""
    color = [20, 20, 20]
    color[label] = 230
    return tuple(color)


def write_image_folder(root: Path, suffix: str = ".png") -> Path:
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for index in range(IMAGES_PER_CLASS):
            Image.new("RGB", (SIZE, SIZE), class_color(label)).save(root / name / f"{index:04d}{suffix}")
    return root


def make_archive(folder: Path, destination: Path) -> Path:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if destination.name.endswith(".zip"):
        with zipfile.ZipFile(destination, "w") as archive:
            for file in files:
                archive.write(file, f"root/{file.relative_to(folder)}")
        return destination
    mode = {".tar": "w", ".gz": "w:gz", ".xz": "w:xz"}[destination.suffix]
    with tarfile.open(destination, mode) as archive:
        for file in files:
            archive.add(file, f"./{file.relative_to(folder)}")
    return destination


def expected_labels() -> np.ndarray:
    return np.repeat(np.arange(len(CLASSES)), IMAGES_PER_CLASS)
