"""Rule branches and bookkeeping no architecture reaches: Pads and Adds across channel axes, Gathers and
Concats along other axes, computed bounds through Cast/Identity/partial Shapes, the default domain
spelled out, empty outputs and parameter counts."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
import tiny_models
from onnx import TensorProto, helper
from tiny_models import TinyNet

from agmc_onnx.analysis import analyze_model
from agmc_onnx.groups.registry import rule_for
from agmc_onnx.groups.rules_transformer import static_value
from agmc_onnx.plan import ChannelSelection
from agmc_onnx.prune import apply_selection
from agmc_onnx.validate import compare_outputs, validate_pruned


def _pin_reason(build) -> str | None:
    return analyze_model(build(TinyNet("pin"))).groups[0].pin_reason


def _oracle_passes(model: onnx.ModelProto, keep: tuple[int, ...]) -> gs.Graph:
    analysis = analyze_model(model)
    selection = ChannelSelection({analysis.groups[0].id: keep})
    pruned, _ = apply_selection(analysis, selection)
    assert validate_pruned(model, analysis, selection, pruned).passed
    return gs.import_onnx(pruned)


def test_pad_over_channels_pins_them_and_says_so():
    def build(net):
        pads = net.const(np.array([0, 1, 0, 0, 0, -1, 0, 0], np.int64))  # channels shifted by one, count kept
        return net.build(net.conv(net.node("Pad", [net.conv("input", 3, 8), pads]), 8, 4))

    reason = _pin_reason(build)
    assert reason.startswith("Pad 'Pad") and reason.endswith("' pads the channel axis")


def test_adding_channels_along_different_axes_pins_them_and_says_so():
    def build(net):
        x = net.conv("input", 3, 8)  # (N, 8, 8, 8): channels on axis 1; transposed, on axis 2
        return net.build(net.conv(net.node("Add", [x, net.node("Transpose", [x], perm=[0, 2, 1, 3])]), 8, 4))

    reason = _pin_reason(build)
    assert reason.startswith("Add 'Add") and reason.endswith("' combines channels along different axes")


def test_gather_without_axis_attribute_selects_along_the_batch():
    net = TinyNet("gather_batch")
    x = net.node("Gather", [net.conv("input", 3, 8), net.const(np.array([0, 0], np.int64))])  # axis 0 by default
    model = net.build(net.conv(x, 8, 4))
    analysis = analyze_model(model)
    assert analysis.groups[0].prunable and analysis.groups[0].n_units == 8
    pruned = _oracle_passes(model, (1, 6))
    assert [n.inputs[1].values.shape[1] for n in pruned.nodes if n.op == "Conv"] == [3, 2]


def test_concat_of_tracked_tensors_along_the_rows_ties_their_channels():
    net = TinyNet("concat_rows")
    x = net.conv("input", 3, 8)
    model = net.build(net.conv(net.node("Concat", [x, net.node("Relu", [x])], axis=2), 8, 4))
    analysis = analyze_model(model)
    assert analysis.groups[0].prunable and analysis.groups[0].pin_reason is None
    pruned = _oracle_passes(model, (0, 3, 7))
    assert [n.inputs[1].values.shape[1] for n in pruned.nodes if n.op == "Conv"] == [3, 3]


def _computed(*ops: tuple[str, dict]) -> gs.Tensor:
    """A tensor computed from the input's shape through ``ops`` (op, attributes), in a graph of its own."""
    x = gs.Variable("x", np.float32, (2, 8, 4, 4))
    tensor, nodes = x, []
    for i, (op, attrs) in enumerate(ops):
        out = gs.Variable(f"t{i}")
        nodes.append(gs.Node(op, f"n{i}", attrs, inputs=[tensor], outputs=[out]))
        tensor = out
    gs.Graph(nodes=nodes, inputs=[x], outputs=[tensor])
    return tensor


@pytest.mark.parametrize("op", ["Cast", "Identity"])
def test_computed_bounds_pass_through_cast_and_identity(op):
    tensor = _computed(("Shape", {}), (op, {"to": TensorProto.INT64} if op == "Cast" else {}))
    value = static_value(tensor, {"x": (2, 8, 4, 4)})
    assert value is not None and value.tolist() == [2, 8, 4, 4] and value.dtype == np.int64


@pytest.mark.parametrize("attrs", [{"start": 1}, {"end": 2}, {"start": 1, "end": 2}])
def test_a_partial_shape_is_not_evaluated(attrs):
    assert static_value(_computed(("Shape", attrs)), {"x": (2, 8, 4, 4)}) is None
    assert static_value(_computed(("Shape", {})), {"x": (2, 8, 4, 4)}).tolist() == [2, 8, 4, 4]


def test_computed_bounds_give_up_past_twelve_operators():
    shapes = {"x": (2, 8, 4, 4)}
    assert static_value(_computed(("Shape", {}), *[("Identity", {})] * 12), shapes).tolist() == [2, 8, 4, 4]
    assert static_value(_computed(("Shape", {}), *[("Identity", {})] * 14), shapes) is None


def test_the_default_domain_spelled_out_keeps_the_operator_rule():
    node = gs.Node("Relu", "r", domain="ai.onnx")
    assert rule_for(node) is rule_for(gs.Node("Relu", "r")) is not rule_for(gs.Node("Relu", "r", domain="custom"))


def test_an_empty_output_compares_as_equal():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 0])
    starts, ends, axes = (helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("s", 0), ("e", 0), ("a", 1)))
    graph = helper.make_graph([helper.make_node("Slice", ["x", "s", "e", "a"], ["y"])], "empty", [x], [y], [starts, ends, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    report = compare_outputs(model, model, {"x": np.ones((2, 3), np.float32)}, exact=True)
    assert report.passed and report.max_abs_diff == 0.0


def _weights(analysis, nodes) -> int:
    """Elements of the constant inputs of ``nodes`` in the prepared model (independent of the layer table)."""
    graph = gs.import_onnx(analysis.model)
    return sum(t.values.size for n in graph.nodes if n.name in nodes for t in n.inputs if isinstance(t, gs.Constant))


def test_group_and_branch_parameter_counts_are_their_weights():
    analysis = analyze_model(tiny_models.residual_chain())
    assert analysis.depth.branches
    for branch in analysis.depth.branches:
        assert branch.params == _weights(analysis, set(branch.nodes)) > 0
    for group in analysis.groups:
        assert group.params == _weights(analysis, set(group.nodes)) > 0


def test_a_one_channel_mask_over_many_channels_is_pinned_and_the_masked_channels_still_prune():
    net = TinyNet("one_channel_mask")
    x = net.conv("input", 3, 8)
    mask = net.node("Sigmoid", [net.conv("input", 3, 1)])  # (N, 1, 8, 8) broadcast over 8 channels
    model = net.build(net.conv(net.node("Mul", [x, mask]), 8, 4))
    masked, single = analyze_model(model).groups[:2]
    assert masked.prunable and masked.n_units == 8
    assert single.pin_reason == f"a single channel of '{mask}' is broadcast over many"
    pruned = _oracle_passes(model, (2, 5))
    assert [n.inputs[1].values.shape for n in pruned.nodes if n.op == "Conv"][-1] == (4, 2, 3, 3)
