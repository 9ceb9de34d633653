"""Model inputs given as arrays keyed by input name (an ``.npz``), any dtype: token ids, audio, features.

Such a set has no labels; it feeds the label-free (fidelity) mode. Row ``i`` of every array is sample ``i``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from agmc_onnx.data.dataset import UNLABELLED
from agmc_onnx.errors import DataError

__all__ = ["TensorDataset"]


@dataclass(frozen=True, eq=False)
class TensorDataset:
    """Arrays keyed by model input name, all with the same first (sample) dimension."""

    arrays: Mapping[str, np.ndarray]
    source: str = ""

    def __post_init__(self) -> None:
        if not self.arrays:
            raise DataError(f"{self.source or 'dataset'}: holds no arrays")
        sizes = {name: (array.shape[0] if array.ndim else 0) for name, array in self.arrays.items()}
        if len(set(sizes.values())) != 1:
            raise DataError(
                f"{self.source or 'dataset'}: arrays disagree on the number of samples "
                f"(first dimension): {sizes}; every input needs one row per sample"
            )
        if not next(iter(sizes.values())):
            raise DataError(f"{self.source or 'dataset'}: holds no samples")

    @property
    def n_samples(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])

    n_images = n_samples  # the name the split helpers share with ImageDataset

    def __len__(self) -> int:
        return self.n_samples

    @property
    def labelled(self) -> bool:
        return False

    @property
    def labels(self) -> np.ndarray:
        return np.full(self.n_samples, UNLABELLED, dtype=np.int64)

    @property
    def classes(self) -> tuple[str, ...]:
        return ()

    def select(self, indices: np.ndarray) -> TensorDataset:
        indices = np.asarray(indices, dtype=np.int64)
        return TensorDataset({name: array[indices] for name, array in self.arrays.items()}, self.source)
