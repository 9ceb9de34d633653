"""Build the zoo's demo data: a seeded, class-balanced subset of a CIFAR-10-style tar archive.

The JPEG bytes are copied unchanged (no re-encoding), under their original ``CLASS/NNNN.jpg`` names.

    python -m agmc_onnx.models.demo_data --source ../shared/data/cifar10 -o models/zoo
"""

from __future__ import annotations

import argparse
import lzma
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from agmc_onnx.data import balanced_order, resolve_splits
from agmc_onnx.data.sources import IMAGE_SUFFIXES
from agmc_onnx.errors import DataError

__all__ = ["subset_archive", "main", "DEMO_TRAIN_IMAGES", "DEMO_TEST_IMAGES"]

DEMO_TRAIN_IMAGES = 2000
DEMO_TEST_IMAGES = 1000


def subset_archive(
    source: str | os.PathLike, destination: str | os.PathLike, n_images: int, seed: int = 0
) -> Path:
    """Write ``n_images`` seeded, class-balanced members of tar ``source`` into ``destination`` (.tar.xz)."""
    members: list[tuple[tarfile.TarInfo, bytes]] = []
    with tarfile.open(source, "r:*") as archive:
        for member in archive:
            if member.isfile() and member.name.lower().endswith(IMAGE_SUFFIXES):
                members.append((member, archive.extractfile(member).read()))
    classes = sorted({PurePosixPath(m.name).parent.name for m, _ in members})
    labels = np.array([classes.index(PurePosixPath(m.name).parent.name) for m, _ in members])
    if n_images > len(members):
        raise DataError(f"{source} holds {len(members)} images, fewer than the {n_images} asked for")
    chosen = sorted(
        (members[i] for i in balanced_order(labels, seed)[:n_images]), key=lambda item: item[0].name
    )
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.tmp")
    # A solid xz stream at the highest preset: the JPEG headers repeat, so it is far smaller than a zip.
    with lzma.open(tmp, "wb", preset=9 | lzma.PRESET_EXTREME) as compressed:
        with tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for member, data in chosen:
                archive.addfile(member, fileobj=_BytesReader(data))
    os.replace(tmp, destination)
    return destination


class _BytesReader:
    """The file object ``tarfile.addfile`` reads a member's bytes from."""

    def __init__(self, data: bytes) -> None:
        self._data, self._offset = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._offset + size
        chunk, self._offset = self._data[self._offset : end], min(end, len(self._data))
        return chunk


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder with cifar10_train/test.tar.xz")
    parser.add_argument("-o", "--output-dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sources = resolve_splits(args.source)
    if sources.test is None:
        raise SystemExit(f"{args.source} must hold a *_train / *_test archive pair")
    for split, path, n_images in (
        ("train", sources.train, DEMO_TRAIN_IMAGES),
        ("test", sources.test, DEMO_TEST_IMAGES),
    ):
        out = subset_archive(path, args.output_dir / f"cifar10_demo_{split}.tar.xz", n_images, args.seed)
        print(f"wrote {out} ({n_images} images, {out.stat().st_size / 1e6:.2f} MB)")  # noqa: T201 (a script)


if __name__ == "__main__":
    main()
