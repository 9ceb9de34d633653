"""Top-1/top-5 accuracy of an ONNX classifier through onnxruntime."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from agmc_onnx.cost.session import ModelSource, create_session, session_input_shape
from agmc_onnx.data.dataset import ImageDataset
from agmc_onnx.data.preprocessing import (
    PreprocessSpec,
    check_images_fit,
    check_spec_fits_input,
    labels_from_metadata,
    spec_from_metadata,
    to_model_input,
)
from agmc_onnx.errors import DataError
from agmc_onnx.progress import CountedProgress, ProgressFn, report

__all__ = ["AccuracyResult", "EvaluationProgress", "evaluate_accuracy", "session_spec"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationProgress(CountedProgress, stage="evaluate", unit="image"):
    """A ``ProgressEvent`` after every batch: ``done`` of ``total`` images scored."""

    done: int
    total: int

    @property
    def message(self) -> str:
        return f"evaluated {self.done}/{self.total} images"


@dataclass(frozen=True)
class AccuracyResult:
    """Accuracies as fractions in [0, 1] over ``n_images`` images; ``seconds`` of wall time."""

    top1: float
    top5: float
    n_images: int
    seconds: float


def session_spec(session: ort.InferenceSession, **overrides: object) -> PreprocessSpec:
    """The preprocessing the session's model declares in its metadata, with ``overrides`` applied."""
    metadata = session.get_modelmeta().custom_metadata_map
    return spec_from_metadata(metadata, session_input_shape(session), **overrides)


def evaluate_accuracy(
    model: ModelSource | ort.InferenceSession,
    dataset: ImageDataset,
    spec: PreprocessSpec | None = None,
    *,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
) -> AccuracyResult:
    """Accuracy of ``model`` on ``dataset``. ``spec`` defaults to the model's own metadata.

    Dataset classes are matched to the model's ``labels`` metadata by name when the model has it, so a
    dataset holding only some of the classes is scored correctly.
    """
    started = time.perf_counter()
    session = model if isinstance(model, ort.InferenceSession) else create_session(model)
    _check_image_input(session)
    spec = spec or session_spec(session)
    check_images_fit(dataset.images, spec, source=dataset.source or "dataset")
    input_shape = session_input_shape(session)
    check_spec_fits_input(spec, input_shape)
    targets = _model_label_indices(session, dataset)
    fixed_batch = input_shape[0] if isinstance(input_shape[0], int) and input_shape[0] > 0 else None
    step = fixed_batch or max(1, batch_size)
    input_name = session.get_inputs()[0].name
    correct_top1 = correct_top5 = 0
    for start in range(0, dataset.n_images, step):
        batch = to_model_input(dataset.images[start : start + step], spec)
        n_real = len(batch)
        if fixed_batch and n_real < fixed_batch:
            # A model with a fixed batch dimension only accepts full batches: pad, then drop the padding.
            batch = np.concatenate([batch, np.zeros((fixed_batch - n_real, *batch.shape[1:]), batch.dtype)])
        logits = np.asarray(session.run(None, {input_name: batch})[0])[:n_real].reshape(n_real, -1)
        hits1, hits5 = _count_hits(logits, targets[start : start + n_real], dataset)
        correct_top1 += hits1
        correct_top5 += hits5
        report(progress, EvaluationProgress(start + n_real, dataset.n_images))
    n_images = dataset.n_images
    return AccuracyResult(
        top1=correct_top1 / n_images if n_images else 0.0,
        top5=correct_top5 / n_images if n_images else 0.0,
        n_images=n_images,
        seconds=time.perf_counter() - started,
    )


def _check_image_input(session: ort.InferenceSession) -> None:
    first = session.get_inputs()[0]
    if len(session.get_inputs()) != 1 or "float" not in first.type:
        names = ", ".join(f"'{v.name}' ({v.type})" for v in session.get_inputs())
        raise DataError(
            f"accuracy is measured on image classifiers with one float image input; this model takes {names}"
        )


def _count_hits(logits: np.ndarray, targets: np.ndarray, dataset: ImageDataset) -> tuple[int, int]:
    n_outputs = logits.shape[1]
    if targets.size and targets.max() >= n_outputs:
        raise DataError(
            f"{dataset.source or 'dataset'} has {len(dataset.classes)} classes but the model outputs "
            f"{n_outputs} scores per image"
        )
    top1 = int((logits.argmax(axis=1) == targets).sum())
    k = min(5, n_outputs)
    top_k = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    top5 = int((top_k == targets[:, None]).any(axis=1).sum())
    return top1, top5


def _model_label_indices(session: ort.InferenceSession, dataset: ImageDataset) -> np.ndarray:
    model_labels = labels_from_metadata(session.get_modelmeta().custom_metadata_map)
    if model_labels is None or tuple(dataset.classes) == model_labels:
        return dataset.labels
    position = {name: i for i, name in enumerate(model_labels)}
    unknown = [name for name in dataset.classes if name not in position]
    if unknown:
        raise DataError(
            f"{dataset.source or 'dataset'}: classes {unknown[:5]} are not among the model's labels "
            f"{list(model_labels)[:10]}; the dataset does not fit the model"
        )
    mapping = np.array([position[name] for name in dataset.classes], dtype=np.int64)
    return mapping[dataset.labels]
