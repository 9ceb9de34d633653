"""Fidelity to the original's outputs, and the sanity gate that refuses data a model cannot read."""

from __future__ import annotations

import numpy as np
import pytest

from agmc_onnx.data import PreprocessSpec
from agmc_onnx.errors import SanityCheckError
from agmc_onnx.fidelity import ReferenceOutputs, compare_outputs
from agmc_onnx.sanity import check_above_chance, check_outputs


def outputs(*values: np.ndarray) -> ReferenceOutputs:
    return ReferenceOutputs(tuple(f"out{i}" for i in range(len(values))), tuple(values))


def test_single_logit_vector_scores_top1_agreement() -> None:
    reference = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    candidate = np.array([[2.0, 0.0], [0.0, 3.0], [0.0, 1.0], [1.0, 0.0]], np.float32)
    result = compare_outputs(outputs(reference), outputs(candidate))
    assert result.metric == "top-1 agreement" and result.score == 0.5


def test_every_output_counts_with_relative_l2_and_integer_outputs_by_equality() -> None:
    rng = np.random.default_rng(0)
    boxes, ids = rng.standard_normal((5, 4, 6)).astype(np.float32), np.arange(5)
    result = compare_outputs(outputs(boxes, ids), outputs(0.9 * boxes, np.array([0, 1, 2, 0, 0])))
    assert result.metric == "1 − relative L2"
    assert result.per_output["out0"] == pytest.approx(0.9)
    assert result.per_output["out1"] == pytest.approx(0.6)
    assert result.score == pytest.approx(0.75)


def test_chance_level_accuracy_stops_with_causes_and_fixes() -> None:
    spec = PreprocessSpec()
    with pytest.raises(SanityCheckError) as raised:
        check_above_chance(0.1, 10, spec=spec, source="cifar10_test.tar.xz", dataset_classes=("a", "b"))
    message = str(raised.value)
    for fragment in ("10.00 % top-1", "preprocessing", "--layout", "--mean", "label order", "--data", "fidelity"):
        assert fragment in message
    check_above_chance(0.21, 10, spec=spec, source="ok")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), "NaN or infinite"),
        (np.array([[3e7, 1.0], [0.0, 1.0]]), "far outside the range"),
        (np.array([[0.5, 1.0], [0.5, 1.0]]), "same output for every input"),
    ],
    ids=["nan", "out-of-range", "constant"],
)
def test_broken_outputs_of_the_original_are_refused(value: np.ndarray, message: str) -> None:
    with pytest.raises(SanityCheckError, match=message):
        check_outputs(outputs(value.astype(np.float32)), spec=None, source="data")
    check_outputs(outputs(np.array([[0.5, 1.0], [0.4, 1.0]], np.float32)), spec=None, source="data")
