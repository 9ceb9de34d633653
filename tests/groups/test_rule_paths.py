"""Channel-rule branches the architecture tests leave out: computed shapes, strided and spatial slices,
grouped transposed convolutions, equal splits, and the pins that name what stopped them."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
import tiny_models
from tiny_models import TinyNet

from agmc_onnx.analysis import analyze_model
from agmc_onnx.groups.flow import RewriteAttribute
from agmc_onnx.importance import channel_scores
from agmc_onnx.plan import ChannelSelection
from agmc_onnx.prune import apply_selection
from agmc_onnx.validate import validate_pruned


def _pruned(model: onnx.ModelProto, keep: dict[str, tuple[int, ...]]):
    analysis = analyze_model(model)
    selection = ChannelSelection(keep)
    pruned, _ = apply_selection(analysis, selection)
    assert validate_pruned(model, analysis, selection, pruned).passed
    return analysis, gs.import_onnx(pruned)


def _kinds(analysis) -> list[str]:
    return sorted(e.kind for e in analysis.flow.edits if isinstance(e, RewriteAttribute))


def _values(tensor: gs.Tensor) -> list:
    return np.asarray(tensor.values).tolist()


def test_chunks_with_computed_bounds_prune_apart_and_get_constant_bounds():
    analysis, pruned = _pruned(tiny_models.computed_chunks(), {"g0": (0, 2)})
    chunked = analysis.groups[0]
    # Each half keeps its first channel (positions 0 and 4); the other six are units of their own.
    assert chunked.prunable and chunked.n_units == 6 and chunked.fixed_units == 2 and len(chunked.consumers) == 2
    assert _kinds(analysis) == ["slice_computed", "slice_computed"]
    slices = [n for n in pruned.nodes if n.op == "Slice"]
    assert [(_values(s.inputs[1]), _values(s.inputs[2])) for s in slices] == [([0], [3]), ([3], [4])]
    assert [n.inputs[1].values.shape[1] for n in pruned.nodes if n.op == "Conv"][1:3] == [3, 1]


def test_a_computed_channel_entry_of_a_view_becomes_the_kept_count():
    analysis, pruned = _pruned(tiny_models.computed_view(), {"g0": (0, 5, 6)})
    assert analysis.groups[0].prunable and _kinds(analysis) == ["reshape_piece"]
    concat = next(n for n in pruned.nodes if n.op == "Concat" and len(n.inputs) == 3)
    assert _values(concat.inputs[1]) == [3]
    gemms = sorted(n.inputs[1].values.shape for n in pruned.nodes if n.op == "Gemm")
    assert gemms == [(10, 3), (10, 3 * 64)]  # the flattening view keeps its -1


def test_views_shaped_by_the_shape_of_the_same_channels_need_no_rewrite():
    analysis, pruned = _pruned(tiny_models.shape_of_views(), {"g0": (1, 4, 6)})
    assert analysis.groups[0].prunable and _kinds(analysis) == []  # both targets follow Shape(x) by themselves
    assert [n.inputs[1].values.shape[1] for n in pruned.nodes if n.op == "Conv"] == [3, 3]


def test_gather_on_spatial_axes_follows_the_channels():
    analysis, pruned = _pruned(tiny_models.gather_spatial(), {"g0": (1, 4)})
    assert analysis.groups[0].prunable and analysis.groups[0].consumers == ("Gemm18",)
    assert next(n for n in pruned.nodes if n.op == "Gemm").inputs[1].values.shape == (10, 2)


def test_grouped_conv_transpose_keeps_whole_groups():
    analysis, pruned = _pruned(tiny_models.grouped_conv_transpose(), {"g0": (1, 3)})
    assert analysis.groups[0].n_units == 4 and analysis.groups[0].unit_width == 2
    transpose = next(n for n in pruned.nodes if n.op == "ConvTranspose")
    assert transpose.attrs["group"] == 2 and transpose.inputs[1].values.shape == (4, 3, 2, 2)


def test_conv_transpose_weights_count_toward_the_importance_of_what_they_read():
    analysis = analyze_model(tiny_models.conv_transpose())
    graph = gs.import_onnx(analysis.model)
    conv = next(n for n in graph.nodes if n.op == "Conv").inputs[1].values
    transpose = next(n for n in graph.nodes if n.op == "ConvTranspose").inputs[1].values  # (in, out, k, k)
    expected = np.abs(conv).reshape(8, -1).sum(1) + np.abs(transpose).reshape(8, -1).sum(1)
    np.testing.assert_allclose(channel_scores(analysis, "l1")["g0"], expected, rtol=1e-5)


def test_equal_split_without_sizes_gets_a_sizes_input():
    _, pruned = _pruned(tiny_models.equal_split(), {"g0": (0, 1, 3)})  # positions 1, 2, 5 and the fixed 0, 4
    split = next(n for n in pruned.nodes if n.op == "Split")
    assert len(split.inputs) == 2 and _values(split.inputs[1]) == [3, 2] and "split" not in split.attrs


@pytest.mark.parametrize(
    "name, consumer_channels",
    [("spatial_slice", 3), ("pad_value_axes", 3), ("squeezed_tokens", None)],
)
def test_spatial_slices_pads_and_axis_ops_keep_the_channels_prunable(name, consumer_channels):
    analysis, pruned = _pruned(tiny_models.CATALOGUE[name](), {"g0": (0, 2, 7)})
    assert analysis.groups[0].prunable and analysis.groups[0].n_units == 8
    weights = [n.inputs[1].values.shape for n in pruned.nodes if n.op in ("Conv", "MatMul")]
    assert weights[-1][1 if consumer_channels else 0] == 3


def _pin_reason(build) -> str | None:
    net = TinyNet("pin")
    return analyze_model(build(net)).groups[0].pin_reason


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
def test_softmax_over_channels_pins_them_and_says_so(op):
    reason = _pin_reason(lambda net: net.build(net.conv(net.node(op, [net.conv("input", 3, 8)], axis=1), 8, 4)))
    assert reason is not None and reason.startswith(f"{op} '{op}") and "mixes values across channels" in reason


def test_reading_only_the_size_pins_nothing():
    def build(net):
        x = net.conv("input", 3, 8)
        size = net.node("Cast", [net.node("Size", [x])], to=onnx.TensorProto.FLOAT)
        return net.build(net.conv(net.node("Mul", [x, size]), 8, 4))

    assert _pin_reason(build) is None


def test_strided_slice_over_channels_pins_them_and_says_so():
    def build(net):
        x = net.conv("input", 3, 8)
        bounds = [net.const(np.array([v], np.int64)) for v in (0, 8, 1, 2)]
        return net.build(net.conv(net.node("Slice", [x, *bounds]), 4, 4))

    assert "steps over channels" in _pin_reason(build)


def test_matmul_of_two_computed_tensors_along_their_channels_pins_them():
    def build(net):
        tokens = net.node("Reshape", [net.conv("input", 3, 8), net.const(np.array([0, 8, 64], np.int64))])
        gram = net.node("MatMul", [tokens, net.node("Transpose", [tokens], perm=[0, 2, 1])])  # (N, 8, 8)
        return net.build(gram)

    assert _pin_reason(build) == "MatMul 'MatMul11' multiplies two computed tensors along their channels"


def test_regrouping_reshape_pins_its_channels():
    def build(net):
        x = net.node("Reshape", [net.conv("input", 3, 8), net.const(np.array([0, 16, 32], np.int64))])
        return net.build(net.node("Relu", [x]))

    assert _pin_reason(build) == "Reshape 'Reshape7' splits or regroups channels"


def test_gather_of_channels_pins_them_and_says_so():
    def build(net):
        x = net.node("Gather", [net.conv("input", 3, 8), net.const(np.array([0, 2], np.int64))], axis=1)
        return net.build(net.conv(x, 2, 4))

    assert _pin_reason(build) == "Gather 'Gather7' selects channels"


def test_gemm_without_bias_and_with_a_broadcast_bias_prune_exactly():
    analysis, pruned = _pruned(tiny_models.gemm_bias_forms(), {"g0": (3, 9, 30)})
    gemms = [n for n in pruned.nodes if n.op == "Gemm"]
    assert [len(n.inputs) for n in gemms] == [2, 3] and gemms[1].inputs[2].values.shape == (1,)
    assert [n.inputs[1].values.shape for n in gemms] == [(3, 16), (3, 10)]


def test_summaries_name_every_field():
    analysis = analyze_model(tiny_models.residual_chain(depth=2))
    group = analysis.groups[0].summary()
    assert set(group) == {"id", "name", "n_channels", "n_units", "unit_width", "fixed_units", "prunable", "status", "producers",
                          "consumers", "macs", "params"}
    assert (group["id"], group["n_channels"], group["name"]) == ("g0", analysis.groups[0].n_channels, analysis.groups[0].name)
    branch = analysis.depth.branches[0]
    summary = branch.summary()
    assert summary["nodes"] == list(branch.nodes) and summary["params"] == branch.params


def test_a_branch_whose_tensor_is_read_elsewhere_is_not_removable():
    def build(net):
        x = net.node("Relu", [net.conv("input", 3, 8)])
        inner = net.node("Relu", [net.conv(x, 8, 8)])
        block = net.node("Add", [x, net.conv(inner, 8, 8)])
        return net.build(net.node("Add", [net.conv(block, 8, 4), net.conv(inner, 8, 4)]))  # inner read twice

    model = build(TinyNet("pin"))
    block_merge = next(n.name for n in model.graph.node if n.op_type == "Add")
    assert block_merge not in [b.merge for b in analyze_model(model).depth.branches]
