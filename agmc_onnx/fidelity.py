"""Fidelity: how closely a (pruned) model reproduces the original's outputs on the same inputs, in [0, 1].

One float output of shape N×K (K > 1, a logit vector): top-1 agreement with the original. Otherwise every
output counts equally: per sample 1 − ‖candidate − reference‖₂ / ‖reference‖₂ (floored at 0) for float
outputs, the share of equal elements for integer or boolean outputs; the score is the mean over outputs.
No labels are needed, so any model with inputs can be compressed against its own behaviour.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from agmc_onnx.cost.session import ModelSource, create_session
from agmc_onnx.data.feeds import Feeder

__all__ = ["FidelityResult", "ReferenceOutputs", "run_outputs", "compare_outputs", "evaluate_fidelity", "metric_name"]

_TINY = 1e-12


@dataclass(frozen=True, eq=False)
class ReferenceOutputs:
    """Every output of a model on a fixed set of inputs, in graph output order."""

    names: tuple[str, ...]
    values: tuple[np.ndarray, ...]

    @property
    def n_samples(self) -> int:
        return len(self.values[0])


@dataclass(frozen=True)
class FidelityResult:
    score: float  # in [0, 1]; 1 means the outputs are reproduced exactly
    metric: str  # "top-1 agreement" | "1 − relative L2"
    per_output: dict
    n_samples: int
    seconds: float = 0.0


def run_outputs(
    model: ModelSource | ort.InferenceSession, feeder: Feeder, *, batch_size: int = 256
) -> ReferenceOutputs:
    """All outputs of ``model`` on every sample of ``feeder`` (a fixed batch dimension's padding dropped)."""
    session = model if isinstance(model, ort.InferenceSession) else create_session(model)
    names = tuple(output.name for output in session.get_outputs())
    parts: list[list[np.ndarray]] = [[] for _ in names]
    for n_real, feeds in feeder.batches(batch_size):
        for part, value in zip(parts, session.run(list(names), feeds)):
            part.append(np.asarray(value)[:n_real])
    return ReferenceOutputs(names, tuple(np.concatenate(part) for part in parts))


def metric_name(reference: ReferenceOutputs) -> str:
    return "top-1 agreement" if _is_logit_vector(reference) else "1 − relative L2"


def _is_logit_vector(reference: ReferenceOutputs) -> bool:
    if len(reference.values) != 1:
        return False
    value = reference.values[0]
    vector = value.ndim == 2 or (value.ndim == 4 and value.shape[2:] == (1, 1))  # conv heads end N×K×1×1
    return vector and value.dtype.kind == "f" and value.shape[1] > 1


def compare_outputs(reference: ReferenceOutputs, candidate: ReferenceOutputs) -> FidelityResult:
    """Fidelity of ``candidate`` to ``reference`` (same inputs, same output order)."""
    if _is_logit_vector(reference):
        ref = reference.values[0].reshape(reference.n_samples, -1)
        cand = candidate.values[0].reshape(reference.n_samples, -1)
        agreement = float((ref.argmax(axis=1) == cand.argmax(axis=1)).mean())
        return FidelityResult(agreement, metric_name(reference), {reference.names[0]: agreement}, len(ref))
    pairs = zip(reference.names, reference.values, candidate.values)
    per_output = {name: _output_fidelity(ref, cand) for name, ref, cand in pairs}
    score = float(np.mean(list(per_output.values())))
    return FidelityResult(score, metric_name(reference), per_output, reference.n_samples)


def _output_fidelity(reference: np.ndarray, candidate: np.ndarray) -> float:
    n_samples = len(reference)
    ref = reference.reshape(n_samples, -1)
    cand = candidate.reshape(n_samples, -1)
    if ref.shape != cand.shape:
        return 0.0
    if reference.dtype.kind not in "fc":
        return float((ref == cand).mean()) if ref.size else 1.0
    ref64, cand64 = ref.astype(np.float64), cand.astype(np.float64)
    if not np.isfinite(cand64).all():
        return 0.0
    error = np.linalg.norm(cand64 - ref64, axis=1)
    norm = np.linalg.norm(ref64, axis=1)
    relative = np.where(norm > _TINY, error / np.maximum(norm, _TINY), np.where(error > _TINY, 1.0, 0.0))
    return float(np.clip(1.0 - relative, 0.0, 1.0).mean())


def evaluate_fidelity(
    model: ModelSource | ort.InferenceSession, feeder: Feeder, reference: ReferenceOutputs, *, batch_size: int = 256
) -> FidelityResult:
    """Fidelity of ``model`` to ``reference`` (the original's outputs on the same ``feeder``)."""
    started = time.perf_counter()
    result = compare_outputs(reference, run_outputs(model, feeder, batch_size=batch_size))
    seconds = time.perf_counter() - started
    return FidelityResult(result.score, result.metric, result.per_output, result.n_samples, seconds)
