"""Channel-flow rules on hand-built graphs: coupling, pinning, structure after pruning, the oracle."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
import tiny_models

from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import ValidationError
from agmc_onnx.importance import channel_scores
from agmc_onnx.plan import ChannelSelection, PruningPlan, select_channels, uniform_plan
from agmc_onnx.prune import apply_selection, prune_model
from agmc_onnx.validate import compare_outputs, masked_reference, random_inputs, validate_pruned


def _prune(model: onnx.ModelProto, plan: PruningPlan):
    analysis = analyze_model(model)
    result = prune_model(model, plan, analysis=analysis)
    report = validate_pruned(model, analysis, result.selection, result.model)
    return analysis, result, report


def _node(model: onnx.ModelProto, op: str, index: int = 0) -> gs.Node:
    return [n for n in gs.import_onnx(model).nodes if n.op == op][index]


@pytest.mark.parametrize("name", sorted(tiny_models.CATALOGUE))
def test_oracle_holds_at_half_and_random_keep_ratios(name):
    model = tiny_models.CATALOGUE[name]()
    analysis = analyze_model(model)
    assert analysis.prunable_groups, f"{name} should have something to prune"
    for plan in tiny_models.half_and_random_plans(analysis, low=0.1):
        result = prune_model(model, plan, analysis=analysis)
        report = validate_pruned(model, analysis, result.selection, result.model)
        assert report.passed
        assert result.after.params < result.before.params


def test_keep_ratio_one_gives_identical_outputs():
    model = tiny_models.residual_chain()
    analysis, result, report = _prune(model, uniform_plan(analyze_model(model).groups, 1.0))
    assert result.selection.keep_units == {}
    assert report.max_abs_diff == 0.0
    feeds = random_inputs(model)
    assert compare_outputs(model, result.model, feeds).max_abs_diff == 0.0


def test_residual_add_shares_keep_indices():
    model = tiny_models.residual_chain(depth=4)
    analysis = analyze_model(model)
    stream = max(analysis.groups, key=lambda g: len(g.producers))
    assert len(stream.producers) == 5  # the stem conv and the last conv of each of the 4 blocks
    kept = analysis.kept_positions(
        select_channels(uniform_plan(analysis.groups, 0.5), analysis.groups, channel_scores(analysis)).dropped_roots(analysis.groups)
    )
    outputs = {n.name: n.output[0] for n in analysis.model.graph.node}
    kept_sets = {tuple(kept[outputs[p]].tolist()) for p in stream.producers}
    assert len(kept_sets) == 1 and len(next(iter(kept_sets))) == 4


def test_concat_of_the_same_tensor_drops_both_copies():
    _, result, _ = _prune(tiny_models.concat_same_tensor(), PruningPlan({"g0": 0.5}))
    consumer = _node(result.model, "Conv", 1)
    assert consumer.inputs[1].values.shape[1] == 8  # 2 copies x 4 kept channels


def test_concat_of_different_sources_keeps_groups_independent():
    analysis = analyze_model(tiny_models.concat_different_sources())
    assert [g.n_units for g in analysis.prunable_groups] == [8, 6]
    _, result, _ = _prune(tiny_models.concat_different_sources(), PruningPlan({"g0": 0.5, "g1": 1.0}))
    assert _node(result.model, "Conv", 2).inputs[1].values.shape[1] == 4 + 6


def test_concat_then_add_merges_both_sources_into_one_group():
    analysis = analyze_model(tiny_models.concat_then_add())
    group = analysis.prunable_groups[0]
    assert group.n_units == 16 and len(group.producers) == 3


def test_depthwise_conv_follows_its_producer():
    _, result, _ = _prune(tiny_models.depthwise_after_producer(), PruningPlan({"g0": 0.5}))
    depthwise = _node(result.model, "Conv", 1)
    assert depthwise.attrs["group"] == 4 and depthwise.inputs[1].values.shape == (4, 1, 3, 3)


def test_grouped_conv_keeps_whole_groups():
    analysis = analyze_model(tiny_models.grouped_conv())
    group = analysis.prunable_groups[0]
    assert group.n_units == 4 and group.n_channels == 16  # 4 conv groups of 4 channels
    _, result, _ = _prune(tiny_models.grouped_conv(), PruningPlan({group.id: 0.5}))
    grouped = _node(result.model, "Conv", 1)
    assert grouped.attrs["group"] == 2 and grouped.inputs[1].values.shape == (8, 4, 3, 3)


def test_grouped_conv_with_wide_groups_prunes_inside_each_group():
    model = tiny_models.grouped_conv_two_towers()
    analysis = analyze_model(model)
    inner = analysis.groups[1]  # the grouped conv's output: in-group index j of both groups is one unit
    assert inner.prunable and inner.n_units == 6 and inner.unit_width == 2
    selection = ChannelSelection({"g0": (0, 2, 3), "g1": (1, 4)})
    pruned, _ = apply_selection(analysis, selection)
    assert validate_pruned(model, analysis, selection, pruned).passed
    grouped = _node(pruned, "Conv", 1)
    assert grouped.attrs["group"] == 2 and grouped.inputs[1].values.shape == (4, 3, 3, 3)


def test_shuffled_units_straddling_conv_groups_are_kept_whole():
    """ShuffleNet V1: the shuffle interleaves the first grouped conv's in-group units; the second grouped
    conv matches the units that lie inside one of its groups and keeps the two that straddle two."""
    model = tiny_models.shufflenet_v1_unit()
    analysis = analyze_model(model)
    mid = analysis.groups[1]
    assert mid.prunable and mid.n_units == 2 and mid.fixed_units == 2
    mid_roots = analysis.flow.roots(analysis.flow.tensors[analysis.flow.producers[mid.producers[0]]].atoms)
    kept_whole = {int(mid_roots[2]), int(mid_roots[5])}  # in-group indices 2 and 5 straddle after the shuffle
    assert all("cannot take these channels equally" in analysis.flow.keep_reasons[r] for r in kept_whole)
    selection = ChannelSelection({mid.id: (1,)})
    pruned, _ = apply_selection(analysis, selection)
    assert validate_pruned(model, analysis, selection, pruned).passed
    convs = [n for n in gs.import_onnx(pruned).nodes if n.op == "Conv"]
    assert [c.attrs["group"] for c in convs[1:4]] == [3, 15, 3]  # 24 - 3 units of 3 positions
    assert convs[3].inputs[1].values.shape == (24, 5, 1, 1)


def test_a_slice_of_the_channels_always_keeps_one():
    """ReXNet: a selection that drops every channel of a sliced part would leave an empty tensor."""
    model = tiny_models.partial_residual()
    analysis = analyze_model(model)
    group = analysis.prunable_groups[0]
    assert group.fixed_units == 2  # the first channel of each Slice's part
    selection = ChannelSelection({group.id: (0,)})
    pruned, _ = apply_selection(analysis, selection)
    assert validate_pruned(model, analysis, selection, pruned).passed
    assert _node(pruned, "Conv", 2).inputs[1].values.shape[1] == 3  # head: 2 kept, tail: its kept first one


def test_a_group_whose_units_are_all_always_kept_is_pinned_and_says_why():
    net = tiny_models.TinyNet("two_halves")
    a, b = net.node("Split", [net.conv("input", 3, 2)], n_outputs=2, axis=1)
    group = analyze_model(net.build(net.conv(net.node("Concat", [b, a], axis=1), 2, 4))).groups[0]
    assert group.n_units == 0 and group.fixed_units == 2
    assert group.status == "pinned: Split 'Split7' keeps a channel in each part"


def test_flatten_into_gemm_slices_whole_spatial_blocks():
    _, result, _ = _prune(tiny_models.flatten_gemm(), PruningPlan({"g0": 0.5}))
    assert _node(result.model, "Gemm").inputs[1].values.shape == (10, 4 * 16)


def test_reshape_with_constant_target_is_rewritten():
    _, result, _ = _prune(tiny_models.reshape_gemm(), PruningPlan({"g0": 0.25}))
    reshape = _node(result.model, "Reshape")
    assert reshape.inputs[1].values.tolist() == [-1, 2 * 4]


def test_squeeze_excitation_ties_the_gate_to_the_features():
    analysis = analyze_model(tiny_models.squeeze_excitation())
    features = analysis.prunable_groups[0]
    assert len(features.producers) == 2  # the feature conv and the gate's expanding conv
    assert analysis.prunable_groups[1].n_units == 4  # the gate's bottleneck prunes on its own


def test_channel_shuffle_is_followed_as_a_permutation():
    model = tiny_models.channel_shuffle()
    analysis = analyze_model(model)
    shuffled = analysis.groups[0]
    assert shuffled.prunable and shuffled.n_units == 4  # channel i of both shuffle groups go together
    selection = ChannelSelection({"g0": (0, 3)})
    pruned, _ = apply_selection(analysis, selection)
    assert validate_pruned(model, analysis, selection, pruned).passed
    reshape = next(n for n in pruned.graph.node if n.op_type == "Reshape")
    assert onnx.numpy_helper.to_array(next(i for i in pruned.graph.initializer if i.name == reshape.input[1]))[2] == 2


def test_attention_heads_are_units_and_prune_exactly():
    model = tiny_models.attention_heads(heads=4, width=8)
    analysis = analyze_model(model)
    heads = next(g for g in analysis.prunable_groups if len(g.producers) == 3)  # Q, K and V projections
    assert heads.n_units == 4 and heads.unit_width == 8
    selection = ChannelSelection({heads.id: (1, 2)})
    pruned, _ = apply_selection(analysis, selection)
    assert validate_pruned(model, analysis, selection, pruned).passed
    weights = {i.name: i for i in pruned.graph.initializer}
    output = next(n for n in pruned.graph.node if n.op_type == "MatMul" and n.output[0] == pruned.graph.output[0].name)
    assert list(weights[output.input[1]].dims) == [16, 6]


def test_channels_last_layernorm_pins_stream_but_not_expansion():
    analysis = analyze_model(tiny_models.channels_last_layernorm())
    assert "LayerNormalization" in analysis.groups[0].pin_reason
    assert [g.n_units for g in analysis.prunable_groups][:1] == [32]


def test_unsupported_op_pins_its_channels_and_names_itself():
    analysis = analyze_model(tiny_models.unsupported_op())
    assert "LRN" in analysis.groups[0].pin_reason
    assert analysis.groups[1].prunable


def test_graph_outputs_are_pinned():
    analysis = analyze_model(tiny_models.conv_bn_relu())
    assert "graph output" in analysis.groups[-1].pin_reason


def test_importance_sums_producer_and_consumer_weights():
    model = tiny_models.conv_bn_relu()
    analysis = analyze_model(model)
    graph = gs.import_onnx(analysis.model)
    w1, w2 = [n.inputs[1].values for n in graph.nodes if n.op == "Conv"]
    expected = np.abs(w1).reshape(8, -1).sum(1) + np.abs(w2).transpose(1, 0, 2, 3).reshape(8, -1).sum(1)
    np.testing.assert_allclose(channel_scores(analysis, "l1")["g0"], expected, rtol=1e-5)


def test_round_to_rounds_kept_channels_up():
    model = tiny_models.gemm_chain()
    _, result, _ = _prune(model, PruningPlan({"g0": 0.3}, round_to=8))
    assert _node(result.model, "Gemm").inputs[1].values.shape[0] == 16  # ceil(9.6) = 10 -> 16


def test_oracle_detects_wrong_channels():
    model = tiny_models.conv_bn_relu()
    analysis = analyze_model(model)
    pruned = prune_model(model, ChannelSelection({"g0": (0, 1, 2, 3)}), analysis=analysis).model
    with pytest.raises(ValidationError, match="differs from the masked original"):
        validate_pruned(model, analysis, ChannelSelection({"g0": (4, 5, 6, 7)}), pruned)
    assert compare_outputs(
        masked_reference(model, analysis, ChannelSelection({"g0": (0, 1, 2, 3)})), pruned, random_inputs(model)
    ).passed


def test_aliased_weights_are_sliced_per_consumer():
    model = tiny_models.aliased_weights()
    _, result, report = _prune(model, PruningPlan({"g0": 0.5, "g1": 0.25}))
    norms = [n for n in gs.import_onnx(result.model).nodes if n.op == "BatchNormalization"]
    assert [n.inputs[2].values.shape[0] for n in norms] == [4, 2] and report.passed
