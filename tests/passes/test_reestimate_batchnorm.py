"""ReestimateBatchNormPass: every BatchNormalization's statistics become the batch statistics, measured
independently here with NumPy on the same feeds (upstream BatchNormalizations normalising with theirs)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from agmc_onnx.errors import PostconditionError, PreconditionError
from agmc_onnx.passes.base import run_passes
from agmc_onnx.passes.reestimate_batchnorm import ReestimateBatchNormPass, batchnorm_nodes

EPS = 1e-5
RNG = np.random.default_rng(0)
W = RNG.normal(size=(4, 3)).astype(np.float32)
B = RNG.normal(size=4).astype(np.float32)
SCALE, BIAS = RNG.uniform(0.5, 2.0, 3).astype(np.float32), RNG.normal(size=3).astype(np.float32)


def _two_input_model() -> onnx.ModelProto:
    """(x + shift) -> BN1 -> Relu -> {1x1 Conv -> BN2, BN3}; BN1 and BN3 share all four parameters."""
    inits = {
        "scale": SCALE, "bias": BIAS, "mean": np.zeros(3, np.float32), "var": np.ones(3, np.float32),
        "w": W.reshape(4, 3, 1, 1), "b": B, "scale2": np.ones(4, np.float32), "bias2": np.zeros(4, np.float32),
        "mean2": np.zeros(4, np.float32), "var2": np.ones(4, np.float32),
    }  # fmt: skip
    nodes = [
        helper.make_node("Add", ["x", "shift"], ["a"], name="add"),
        helper.make_node("BatchNormalization", ["a", "scale", "bias", "mean", "var"], ["y1"], name="bn1"),
        helper.make_node("Relu", ["y1"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w", "b"], ["z"], name="conv"),
        helper.make_node("BatchNormalization", ["z", "scale2", "bias2", "mean2", "var2"], ["out1"], name="bn2"),
        helper.make_node("BatchNormalization", ["r", "scale", "bias", "mean", "var"], ["out2"], name="bn3"),
    ]
    graph = helper.make_graph(
        nodes,
        "two_inputs",
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
            for n, s in (("x", ["N", 3, 4, 4]), ("shift", [1, 3, 1, 1]))
        ],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", c, 4, 4]) for n, c in (("out1", 4), ("out2", 3))],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _batch_statistics(x: np.ndarray, shift: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(mean, biased variance) of bn1, bn2, bn3's inputs, each normalising with its own batch statistics."""
    a = (x + shift).astype(np.float64)
    stats = [(a.mean(axis=(0, 2, 3)), a.var(axis=(0, 2, 3)))]
    per_channel = (slice(None), None, None)
    normalised = (a - stats[0][0][per_channel]) / np.sqrt(stats[0][1][per_channel] + EPS)
    r = np.maximum(SCALE[per_channel] * normalised + BIAS[per_channel], 0.0)
    z = np.einsum("oc,nchw->nohw", W, r) + B[per_channel]
    return stats + [(z.mean(axis=(0, 2, 3)), z.var(axis=(0, 2, 3))), (r.mean(axis=(0, 2, 3)), r.var(axis=(0, 2, 3)))]


def _initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    return next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == name)


def test_statistics_equal_the_batch_statistics_averaged_over_the_feeds():
    model = _two_input_model()
    before = model.SerializeToString()
    feeds = [
        {
            "x": RNG.normal(1.0, 2.0, (8, 3, 4, 4)).astype(np.float32),
            "shift": RNG.normal(size=(1, 3, 1, 1)).astype(np.float32),
        }
        for _ in range(3)
    ]
    result = run_passes(model, [ReestimateBatchNormPass(feeds)])
    per_batch = [_batch_statistics(f["x"], f["shift"]) for f in feeds]
    for index, node in enumerate(batchnorm_nodes(result)):
        expected_mean = np.mean([stats[index][0] for stats in per_batch], axis=0)
        expected_var = np.mean([stats[index][1] for stats in per_batch], axis=0)
        np.testing.assert_allclose(_initializer(result, node.input[3]), expected_mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(_initializer(result, node.input[4]), expected_var, rtol=1e-3, atol=1e-5)
    names = [node.input[k] for node in batchnorm_nodes(result) for k in (3, 4)]
    assert len(set(names)) == len(names) == 6  # bn1 and bn3 no longer share their statistics
    assert {i.name for i in result.graph.initializer} >= {"scale", "bias"} and "mean" not in names
    assert model.SerializeToString() == before
    onnx.checker.check_model(result, full_check=True)


def test_a_model_without_batchnorm_is_not_modified():
    model = _two_input_model()
    for node in batchnorm_nodes(model):
        node.op_type = "Identity"
        del node.input[1:]
    result = ReestimateBatchNormPass([])(model)
    assert not result.modified and result.model == model


def test_no_calibration_batches_is_refused():
    with pytest.raises(PreconditionError, match="no calibration batches"):
        run_passes(_two_input_model(), [ReestimateBatchNormPass([])])


class _SharingPass(ReestimateBatchNormPass):
    """A broken rewrite: the last BatchNormalization reads the first one's new mean."""

    def call(self, model):
        result = super().call(model)
        nodes = batchnorm_nodes(result.model)
        nodes[-1].input[3] = nodes[0].input[3]
        return result


def test_shared_statistics_after_the_rewrite_are_caught():
    feeds = [{"x": np.ones((2, 3, 4, 4), np.float32), "shift": np.zeros((1, 3, 1, 1), np.float32)}]
    with pytest.raises(PostconditionError, match="shared between nodes"):
        run_passes(_two_input_model(), [_SharingPass(feeds)])
