"""Depth in the search: an action below the threshold deletes a removable group's branch, inside the wall."""

from __future__ import annotations

import numpy as np
import pytest
from search_fixtures import one_torch_thread  # noqa: F401  (autouse fixture)
from trained_models import shared_model_path

from agmc_onnx.analysis import analyze_model
from agmc_onnx.groups.macs_model import MacsModel
from agmc_onnx.importance import channel_scores
from agmc_onnx.io import load_model
from agmc_onnx.prune import prune_model
from agmc_onnx.search.budget import ActionWall, CostModel
from agmc_onnx.search.env import PruningEnv
from agmc_onnx.search.features import search_order

THRESHOLD = 0.1


@pytest.fixture(scope="module")
def resnet20():
    model = load_model(shared_model_path("resnet20"))
    return model, analyze_model(model)


def _env(analysis, keep_macs: float, savings=None) -> PruningEnv:
    macs = MacsModel.from_analysis(analysis)
    cost = CostModel(macs, np.ones_like(macs.layer_macs), removal_savings=savings)
    removable = frozenset(analysis.depth.removable_groups)
    wall = ActionWall(search_order(analysis), cost, keep_macs * cost.full_cost, 0.2, 1, removable)
    scores = channel_scores(analysis)
    return PruningEnv(wall.groups, wall, depth_threshold=THRESHOLD, depth=analysis.depth, scores=scores)


def test_action_below_threshold_removes_only_removable_groups(resnet20):
    _, analysis = resnet20
    env = _env(analysis, 0.9)
    for step, group in enumerate(env.groups):
        removable = analysis.depth.branch_of(group.id) is not None
        assert env.removable(step) == removable
        assert (env.desired_count(step, 0.05) == 0) == removable
        assert env.desired_count(step, THRESHOLD) > 0
        for count in (0, group.n_units // 2, group.n_units) if removable else (group.n_units // 2,):
            assert env.desired_count(step, env.action_of(count, step)) == count


def test_removed_branch_macs_are_what_the_wall_counts(resnet20):
    model, analysis = resnet20
    env = _env(analysis, 0.75)
    rng = np.random.default_rng(0)
    for _ in range(10):
        env.reset()
        for _ in range(env.n_steps):
            env.step(float(rng.uniform(0.0, 0.4)))
        outcome = env.finish()
        if 0 in outcome.keep_counts:
            break
    assert 0 in outcome.keep_counts and outcome.cost_fraction <= 0.75 + 1e-9
    result = prune_model(model, env.selection(outcome.keep_counts), analysis)
    assert result.selection.removed_branches
    assert result.after.macs / result.before.macs == pytest.approx(outcome.cost_fraction, abs=0.01)


def test_removal_savings_lower_the_cost_of_a_deleted_branch(resnet20):
    _, analysis = resnet20
    macs = MacsModel.from_analysis(analysis)
    savings = np.zeros(len(macs.group_ids))
    column = macs.group_ids.index(analysis.depth.branches[0].groups[0])
    savings[column] = 1e6
    with_savings = CostModel(macs, np.ones_like(macs.layer_macs), removal_savings=savings)
    keep = np.ones(len(macs.group_ids))
    keep[column] = 0.0
    assert with_savings.cost(keep) == pytest.approx(CostModel.of_macs(macs).cost(keep) - 1e6)
    assert with_savings.full_cost == CostModel.of_macs(macs).full_cost


def test_latency_savings_are_shared_per_removed_operator_and_only_for_offered_groups():
    import tiny_models

    from agmc_onnx.search.depth_budget import fit_removal_savings, searchable_removals
    from agmc_onnx.search.latency_model import fit_latency_model

    analysis = analyze_model(tiny_models.residual_chain(depth=3))
    groups = search_order(analysis)
    removable = searchable_removals(analysis, groups)
    assert removable == frozenset(analysis.depth.removable_groups) and len(removable) == 3
    fit = fit_latency_model(analysis, groups, "mobile-cpu", 1, keep_ratios=(1.0, 0.5), min_seconds=0.02)
    savings = fit_removal_savings(analysis, fit, removable, min_seconds=0.02).cost_model.removal_savings
    columns = fit.cost_model.macs.group_ids
    offered = np.array([g in removable for g in columns])
    assert np.all(savings[~offered] == 0) and np.all(savings[offered] >= 0)
    assert np.ptp(savings[offered]) <= 1e-12  # equal branches, equal operator counts, equal credit
    assert fit_removal_savings(analysis, fit, frozenset()) is fit


def test_search_with_depth_deletes_branches_within_the_budget_and_the_plan_applies():
    from search_fixtures import SPEC, labelled_by_model, tiny_classifier

    from agmc_onnx.search import AccuracyReward, SearchConfig, run_search
    from agmc_onnx.validate import validate_pruned

    model = tiny_classifier()
    analysis = analyze_model(model)
    branch_group = analysis.depth.branches[0].groups[0]
    reward = AccuracyReward(analysis, labelled_by_model(model), SPEC)
    config = SearchConfig(policy="random", n_episodes=8, flops_keep_ratio=0.6, round_to=1, depth_threshold=0.5)
    result = run_search(analysis, reward, config)
    index = [g.id for g in search_order(analysis)].index(branch_group)
    removed = [r for r in result.records if r.keep_ratios[index] == 0.0]
    assert removed and all(r.macs_kept_fraction <= 0.6 + 1e-9 for r in result.records)
    plan = result.plan
    if plan.keep_ratios[branch_group] != 0.0:  # make sure a depth plan is what gets applied below
        plan = type(plan)({**plan.keep_ratios, branch_group: 0.0}, round_to=1)
    pruned = prune_model(model, plan, analysis)
    assert pruned.selection.removed_branches == (analysis.depth.branches[0].id,)
    validate_pruned(model, analysis, pruned.selection, pruned.model)
    assert result.plan.metadata["search"]["depth_threshold"] == 0.5


def test_compress_config_carries_a_depth_threshold_in_the_action_range():
    from agmc_onnx.compress.config import CompressConfig, ConfigError, resolve_config

    assert resolve_config(shared_model_path("resnet20"), None, {"depth": 0.2}).depth == 0.2
    with pytest.raises(ConfigError, match="depth threshold is 1.0"):
        CompressConfig(depth=1.0)
