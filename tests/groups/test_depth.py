"""Depth: which residual branches can be deleted whole, which groups stand for them, and why others cannot."""

from __future__ import annotations

import numpy as np
import pytest
import tiny_models
from tiny_models import TinyNet

from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import PlanError
from agmc_onnx.plan import PruningPlan, select_channels
from agmc_onnx.prune import prune_model
from agmc_onnx.validate import compare_outputs, masked_reference, random_inputs, validate_pruned, zero_removed_branches


def downsampling_blocks():
    """A ResNet stage change: the main branch and a strided 1x1 shortcut both read x."""
    net = TinyNet("downsampling_blocks")
    x = net.node("Relu", [net.bn(net.conv("input", 3, 8), 8)])
    main = net.bn(net.conv(net.node("Relu", [net.bn(net.conv(x, 8, 16, stride=2), 16)]), 16, 16), 16)
    shortcut = net.bn(net.conv(x, 8, 16, k=1, stride=2), 16)
    x = net.node("Relu", [net.node("Add", [main, shortcut])])
    branch = net.bn(net.conv(net.node("Relu", [net.bn(net.conv(x, 16, 16), 16)]), 16, 16), 16)
    x = net.node("Relu", [net.node("Add", [x, branch])])
    return net.build(net.conv(x, 16, 4))


def nested_residual():
    """A branch that itself holds a residual block: the inner group belongs to the inner branch."""
    net = TinyNet("nested_residual")
    x = net.node("Relu", [net.conv("input", 3, 8)])
    inner_in = net.conv(x, 8, 8)
    inner = net.node("Add", [inner_in, net.conv(net.node("Relu", [net.conv(inner_in, 8, 8)]), 8, 8)])
    x = net.node("Add", [x, net.conv(net.node("Relu", [inner]), 8, 8)])
    return net.build(net.conv(x, 8, 4))


def test_residual_chain_offers_each_block_inner_group():
    analysis = analyze_model(tiny_models.residual_chain(depth=4))
    branches = analysis.depth.branches
    assert len(branches) == 4
    assert all(len(b.groups) == 1 and len(b.nodes) == 3 and b.n_operators == 4 for b in branches)
    stream = analysis.groups[0]
    assert analysis.depth.branch_of(stream.id) is None
    assert "tied to the residual stream through Add" in analysis.depth.obstacles[stream.id]


def test_downsampling_block_offers_main_branch_only():
    analysis = analyze_model(downsampling_blocks())
    merges = [b.merge for b in analysis.depth.branches]
    assert len(merges) == len(set(merges)) == 2  # the shortcut conv stays as the first merge's other input
    first = analysis.depth.branches[0]
    assert [analysis.layers[n].op_type for n in first.nodes].count("Conv") == 2


def test_nested_branch_group_belongs_to_the_innermost_branch():
    analysis = analyze_model(nested_residual())
    outer = max(analysis.depth.branches, key=lambda b: len(b.nodes))
    inner = min(analysis.depth.branches, key=lambda b: len(b.nodes))
    assert inner.merge in outer.nodes and inner.groups and set(inner.groups).isdisjoint(outer.groups)
    model = nested_residual()
    plan = PruningPlan({inner.groups[0]: 0, outer.groups[0]: 0})
    result = prune_model(model, plan, analysis)
    validate_pruned(model, analysis, result.selection, result.model)
    assert len(result.model.graph.node) == len(analysis.model.graph.node) - outer.n_operators


@pytest.mark.parametrize(
    "builder, reason",
    [
        (tiny_models.conv_bn_relu, "no residual merge bypasses it: it is the only path"),
        (tiny_models.concat_then_add, "it feeds Concat"),
    ],
    ids=["only-path", "feeds-concat"],
)
def test_zero_ratio_for_a_group_outside_any_branch_names_why(builder, reason):
    analysis = analyze_model(builder())
    group = analysis.prunable_groups[0]
    with pytest.raises(PlanError, match=f"group '{group.id}' .* cannot have keep ratio 0: {reason}"):
        select_channels(PruningPlan({group.id: 0.0}), analysis.groups, {}, analysis.depth)


def test_removed_branch_equals_original_with_branch_output_zeroed():
    model = tiny_models.residual_chain(depth=4)
    analysis = analyze_model(model)
    branch = analysis.depth.branches[1]
    result = prune_model(model, PruningPlan({branch.groups[0]: 0, analysis.groups[0].id: 0.5}), analysis)
    assert result.selection.removed_branches == (branch.id,)
    assert result.after.macs == pytest.approx(result.before.macs - branch.macs, rel=0.6)
    report = validate_pruned(model, analysis, result.selection, result.model)
    assert report.passed and report.output_scale > 0


def test_oracle_rejects_the_wrong_branch_removed():
    model = tiny_models.residual_chain(depth=4)
    analysis = analyze_model(model)
    removed = analysis.depth.branches[1]
    result = prune_model(model, PruningPlan({removed.groups[0]: 0}), analysis)
    wrong = type(result.selection)(result.selection.keep_units, (analysis.depth.branches[2].id,))
    reference = zero_removed_branches(masked_reference(model, analysis, wrong), analysis, wrong)
    report = compare_outputs(reference, result.model, random_inputs(analysis.model))
    assert not report.passed


def test_zero_width_resnet20_branches_pass_the_oracle():
    from trained_models import shared_model_path

    from agmc_onnx.io import load_model

    model = load_model(shared_model_path("resnet20"))
    analysis = analyze_model(model)
    plan = {b.groups[0]: 0.0 for b in analysis.depth.branches[::3]}  # includes the first downsampling block
    plan.update({g.id: 0.5 for g in analysis.prunable_groups if g.id not in plan})
    result = prune_model(model, PruningPlan(plan, round_to=4), analysis)
    assert len(result.selection.removed_branches) == 3
    validate_pruned(model, analysis, result.selection, result.model)
    removed_macs = sum(analysis.depth.branch(b).macs for b in result.selection.removed_branches)
    assert result.after.macs < result.before.macs - removed_macs
    assert np.isfinite(result.after.params)
