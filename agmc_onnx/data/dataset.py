"""The in-memory image dataset every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agmc_onnx.errors import DataError

__all__ = ["ImageDataset", "UNLABELLED"]

UNLABELLED = -1  # the label of every image of a set without classes


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Decoded images with integer labels, or without labels.

    ``images`` is uint8 N×H×W×C in the colour order of the preprocessing spec; ``labels`` is int64 N;
    label ``i`` names ``classes[i]``. An unlabelled set (a folder of images without class folders) has no
    classes and every label is ``UNLABELLED``. ``source`` says where the data came from, ``from_cache``
    whether the decoded arrays were read from the on-disk cache.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str = ""
    from_cache: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise DataError(
                f"{self.source or 'dataset'}: images must be uint8 N×H×W×C, "
                f"got {self.images.dtype} with shape {self.images.shape}"
            )
        if self.labels.shape != (len(self.images),):
            raise DataError(
                f"{self.source or 'dataset'}: {len(self.labels)} labels for {len(self.images)} images "
                f"(label shape {self.labels.shape}); every image needs exactly one label"
            )
        if not self.classes:
            if len(self.labels) and (self.labels != UNLABELLED).any():
                raise DataError(f"{self.source or 'dataset'}: labels given but no class names")
        elif len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise DataError(
                f"{self.source or 'dataset'}: labels must lie in [0, {len(self.classes) - 1}] "
                f"for {len(self.classes)} classes, found [{self.labels.min()}, {self.labels.max()}]"
            )

    @classmethod
    def unlabelled(cls, images: np.ndarray, source: str = "", from_cache: bool = False) -> ImageDataset:
        return cls(images, np.full(len(images), UNLABELLED, dtype=np.int64), (), source, from_cache)

    @property
    def labelled(self) -> bool:
        return bool(self.classes)

    @property
    def n_images(self) -> int:
        return len(self.images)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of every image."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def n_channels(self) -> int:
        return int(self.images.shape[3])

    def select(self, indices: np.ndarray) -> ImageDataset:
        """The images at ``indices`` (in that order), as a new dataset."""
        indices = np.asarray(indices, dtype=np.int64)
        return ImageDataset(
            self.images[indices], self.labels[indices], self.classes, self.source, self.from_cache
        )
