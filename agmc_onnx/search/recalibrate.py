"""Calibration batches: the few class-balanced images that BatchNormalization re-estimation
(``agmc_onnx.passes.reestimate_batchnorm.ReestimateBatchNormPass``), reconstruction and data-driven
importance measure on, drawn in one place for the search, ``compress``, ``prune`` and the benchmarks.
"""

from __future__ import annotations

import numpy as np

from agmc_onnx.data import ImageDataset, PreprocessSpec, balanced_order, to_model_input
from agmc_onnx.data.feeds import Feeder

__all__ = ["calibration_batches", "calibration_feeds"]


def calibration_batches(
    dataset: ImageDataset, spec: PreprocessSpec, n_images: int = 256, batch_size: int = 128
) -> tuple[tuple[np.ndarray, ...], list[np.ndarray]]:
    """(row indices, model inputs) of class-balanced calibration batches drawn from ``dataset``.

    Every batch is class-balanced (seeded): datasets are often ordered by class, and statistics measured
    on a few classes would mis-normalise the rest.
    """
    order = balanced_order(dataset.labels, seed=0)[:n_images]
    rows = tuple(order[i : i + batch_size] for i in range(0, len(order), batch_size))
    return rows, [to_model_input(dataset.images[r], spec) for r in rows]


def calibration_feeds(feeder: Feeder, n_samples: int = 256, batch_size: int = 128) -> list[dict[str, np.ndarray]]:
    """Feeds of seeded, shuffled calibration batches from any dataset bound to a model (``Feeder``)."""
    order = balanced_order(feeder.dataset.labels, seed=0)[:n_samples]
    return [feeder.feeds(np.sort(order[i : i + batch_size])) for i in range(0, len(order), batch_size)]
