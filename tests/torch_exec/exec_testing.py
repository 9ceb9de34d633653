"""Helpers shared by the torch executor tests (a uniquely named module: the test folders have no __init__)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from agmc_onnx.models.corpus import CORPUS, corpus_names

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS_CACHE = REPO_ROOT / ".cache" / "corpus"


def corpus_params() -> list:
    """(name, fused_bn) for every corpus entry; heavy entries are marked slow."""
    params = []
    for name in corpus_names(include_heavy=True):
        marks = [pytest.mark.slow] if CORPUS[name].heavy else []
        for fused in (False, True):
            params.append(pytest.param(name, fused, id=f"{name}-{'fused' if fused else 'bn'}", marks=marks))
    return params


def run_onnxruntime(model_or_path, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    if isinstance(model_or_path, (str, Path)):
        source = str(model_or_path)
    else:
        source = model_or_path.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, inputs)


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest absolute difference relative to the output's scale (its largest magnitude)."""
    scale = max(float(np.abs(expected).max()), 1e-12)
    return float(np.abs(actual.astype(np.float64) - expected).max()) / scale
