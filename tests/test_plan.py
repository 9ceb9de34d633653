"""Pruning plans and channel selections as data: JSON both ways, the checks on bad values, unit counts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tiny_models

from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import PlanError
from agmc_onnx.plan import (
    ChannelSelection,
    PruningPlan,
    kept_unit_count,
    select_channels,
    selection_from_indices,
    uniform_plan,
)


@pytest.fixture(scope="module")
def groups():
    return analyze_model(tiny_models.conv_bn_relu()).groups  # g0: 8 prunable channels, g1: the pinned output


def test_plan_json_round_trip_keeps_every_field():
    plan = PruningPlan({"g0": 0.5, "g1": 1}, round_to=8, importance="l2", metadata={"source": "search"})
    data = json.loads(plan.to_json())
    assert data == {"keep_ratios": {"g0": 0.5, "g1": 1}, "round_to": 8, "importance": "l2", "metadata": {"source": "search"}}
    assert PruningPlan.from_json(plan.to_json()) == plan


def test_a_bare_mapping_is_a_plan_with_defaults():
    plan = PruningPlan.from_json('{"g0": 0.25}')
    assert (dict(plan.keep_ratios), plan.round_to, plan.importance, dict(plan.metadata)) == ({"g0": 0.25}, 1, "l1", {})


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "ratios.json is not valid JSON"),
        ("[0.5]", "ratios.json must hold a JSON object of group -> keep ratio"),
        ('{"keep_ratios": [0.5]}', "ratios.json: 'keep_ratios' must be an object"),
        ('{"g0": 1.5}', r"keep ratio of group 'g0' is 1.5; it must be in \[0, 1\]"),
        ('{"g0": -0.1}', "it must be in"),
        ('{"g0": "half"}', "keep ratio of group 'g0' is 'half'"),
        ('{"keep_ratios": {"g0": 0.5}, "round_to": 0}', "round_to is 0; it must be a positive integer"),
        ('{"keep_ratios": {"g0": 0.5}, "importance": "l3"}', "importance 'l3' is unknown; use one of l1, l2"),
    ],
)
def test_bad_plans_are_refused_with_the_reason(text, message):
    with pytest.raises(PlanError, match=message):
        PruningPlan.from_json(text, source="ratios.json")


def test_the_bounds_and_every_named_criterion_are_accepted():
    for ratio in (0, 0.0, 1, 1.0):
        PruningPlan({"g0": ratio})
    for name in ("l1", "l2", "random", "taylor", "reconstruction"):
        assert PruningPlan({}, round_to=1, importance=name).importance == name


def test_selection_json_lists_kept_units_and_removed_branches():
    assert json.loads(ChannelSelection({"g0": (1, 3)}).to_json()) == {"g0": [1, 3]}
    both = ChannelSelection({"g0": (1, 3)}, removed_branches=("b0", "b2"))
    assert json.loads(both.to_json()) == {"g0": [1, 3], "removed_branches": ["b0", "b2"]}


def test_dropped_roots_are_the_units_not_kept(groups):
    g0 = groups[0]
    dropped = ChannelSelection({"g0": (0, 2, 4, 6)}).dropped_roots(groups)
    assert dropped == set(g0.unit_roots[[1, 3, 5, 7]].tolist())


def test_indices_are_sorted_deduplicated_and_checked(groups):
    selection = selection_from_indices({"g0": [5, 1, 5, 0]}, groups)
    assert selection.keep_units == {"g0": (0, 1, 5)} and selection.removed_branches == ()
    assert selection_from_indices({"g0": range(8)}, groups).keep_units == {}  # everything kept: not listed
    assert selection_from_indices({"g1": range(4)}, groups).keep_units == {}  # a pinned group kept whole
    with pytest.raises(PlanError, match="group 'g0' would keep no channels"):
        selection_from_indices({"g0": []}, groups)
    with pytest.raises(PlanError, match="group 'g0' has 8 units; index 8 is out of range"):
        selection_from_indices({"g0": [0, 8]}, groups)
    with pytest.raises(PlanError, match="out of range"):
        selection_from_indices({"g0": [-1, 2]}, groups)
    with pytest.raises(PlanError, match=r"group 'g1' cannot be pruned \(pinned: graph output"):
        selection_from_indices({"g1": [0]}, groups)
    with pytest.raises(PlanError, match=r"plan names unknown group 'g7' \(known groups: g0, g1\)"):
        selection_from_indices({"g7": [0]}, groups)


def test_groups_are_found_by_name_too(groups):
    selection = selection_from_indices({groups[0].name: [0, 1]}, groups)
    assert selection.keep_units == {"g0": (0, 1)}


def test_kept_units_round_up_to_whole_multiples(groups):
    g0 = groups[0]  # 8 units of width 1
    assert [kept_unit_count(g0, r) for r in (0.01, 0.125, 0.126, 0.5, 1.0)] == [1, 1, 2, 4, 8]
    assert kept_unit_count(g0, 0.3, round_to=4) == 4  # ceil(2.4) = 3 -> 4
    assert kept_unit_count(g0, 0.6, round_to=4) == 8
    assert kept_unit_count(g0, 0.9, round_to=16) == 8  # never more than the group has
    heads = next(g for g in analyze_model(tiny_models.attention_heads(heads=4, width=2)).groups if g.unit_width == 2)
    assert kept_unit_count(heads, 0.25, round_to=4) == 2  # 2 units of width 2 make 4 channels


def test_select_channels_keeps_the_best_units_and_breaks_ties_by_index(groups):
    scores = {"g0": np.array([1.0, 5.0, 5.0, 0.5, 3.0, 5.0, 0.0, 2.0]), "g1": np.ones(4)}
    assert select_channels(PruningPlan({"g0": 0.25}), groups, scores).keep_units == {"g0": (1, 2)}
    assert select_channels(PruningPlan({"g0": 0.5}), groups, scores).keep_units == {"g0": (1, 2, 4, 5)}
    assert select_channels(PruningPlan({"g0": 1.0, "g1": 1.0}), groups, scores).keep_units == {}
    with pytest.raises(PlanError, match=r"group 'g1' cannot be pruned \(pinned: graph output"):
        select_channels(PruningPlan({"g1": 0.5}), groups, scores)
    assert uniform_plan(groups, 0.5).keep_ratios == {"g0": 0.5}  # pinned groups are left out


def test_keep_ratio_zero_removes_a_branch_once_and_refuses_other_groups():
    analysis = analyze_model(tiny_models.residual_chain(depth=2))
    branch = analysis.depth.branches[0]
    first, second = branch.groups[0], branch.groups[-1]
    scores = {g.id: np.arange(g.n_units, dtype=float) for g in analysis.groups}
    plan = PruningPlan({first: 0.0, second: 0.0})
    selection = select_channels(plan, analysis.groups, scores, analysis.depth)
    assert selection.removed_branches == (branch.id,) and selection.keep_units == {}
    stream = next(g for g in analysis.groups if g.id not in analysis.depth.removable_groups)
    with pytest.raises(PlanError, match=f"group '{stream.id}' .* cannot have keep ratio 0"):
        select_channels(PruningPlan({stream.id: 0.0}), analysis.groups, scores, analysis.depth)
