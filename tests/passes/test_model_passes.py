"""Whole-model passes (shape inference, the ONNX checker) share the pass framework with graph rewrites."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
import tiny_models

from agmc_onnx.errors import PostconditionError, ValidationError
from agmc_onnx.passes.base import GraphPass, ModelPass, ModelPassResult, PassManager, PassResult
from agmc_onnx.passes.check_model import CheckModelPass
from agmc_onnx.passes.cleanup import CleanupPass
from agmc_onnx.passes.infer_shapes import InferShapesPass


class _DanglingInputPass(GraphPass):
    """Breaks the graph: the first node reads a tensor nothing produces."""

    def call(self, graph: gs.Graph) -> PassResult:
        graph.nodes[0].inputs[0] = gs.Variable("nowhere", dtype=np.float32)
        return PassResult(graph, True)


class _CountNodesPass(ModelPass):
    def __init__(self, seen: list) -> None:
        self.seen = seen

    def call(self, model: onnx.ModelProto) -> ModelPassResult:
        self.seen.append(len(model.graph.node))
        return ModelPassResult(model, False)


class _BrokenModelPass(ModelPass):
    def call(self, model: onnx.ModelProto) -> ModelPassResult:
        raise KeyError("boom")


def test_graph_and_model_passes_run_in_order_without_touching_the_input():
    model = tiny_models.conv_bn_relu()
    before = model.SerializeToString()
    seen: list[int] = []
    result, stats = PassManager([CleanupPass(), _CountNodesPass(seen), InferShapesPass(), CleanupPass()]).run(model)
    assert seen == [len(model.graph.node)]
    assert list(stats) == ["CleanupPass", "_CountNodesPass", "InferShapesPass"]  # one entry per pass name
    assert stats["InferShapesPass"]["value_info"] == len(result.graph.value_info) > 0
    assert model.SerializeToString() == before
    assert result.opset_import == model.opset_import and result.metadata_props == model.metadata_props


def test_a_model_pass_alone_returns_a_copy():
    model = tiny_models.conv_bn_relu()
    result, _ = PassManager([CheckModelPass()]).run(model)
    assert result == model and result is not model


def test_the_checker_pass_refuses_a_broken_rewrite_with_one_line():
    with pytest.raises(ValidationError, match="fails the ONNX checker") as caught:
        PassManager([_DanglingInputPass(), CheckModelPass()]).run(tiny_models.conv_bn_relu())
    assert "\n" not in str(caught.value)


def test_a_stray_error_inside_a_model_pass_names_the_pass():
    with pytest.raises(PostconditionError, match="_BrokenModelPass failed: KeyError"):
        PassManager([_BrokenModelPass()]).run(tiny_models.conv_bn_relu())
