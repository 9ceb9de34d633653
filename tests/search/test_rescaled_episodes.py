"""Rescaled episodes: the steps run free and every keep ratio is multiplied by one factor at the end, the
largest that meets the budget, so the plan keeps its shape and the budget's cost is shared by all groups."""

from __future__ import annotations

import numpy as np
import pytest
from search_fixtures import one_torch_thread  # noqa: F401  (autouse fixture)
from trained_models import shared_model_path

from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import PlanError, PreconditionError
from agmc_onnx.groups.macs_model import MacsModel
from agmc_onnx.io import load_model
from agmc_onnx.search.budget import ActionWall, CostModel, uniform_keep_ratio
from agmc_onnx.search.env import PruningEnv
from agmc_onnx.search.features import search_order
from agmc_onnx.search.run import SearchConfig


@pytest.fixture(scope="module")
def wall():
    analysis = analyze_model(load_model(shared_model_path("mobilenetv2")))
    cost = CostModel.of_macs(MacsModel.from_analysis(analysis))
    return ActionWall(search_order(analysis), cost, 0.5 * cost.full_cost, 0.2, 1)


def _play(env: PruningEnv, actions) -> tuple:
    logged = [env.step(float(a)) for a in actions]
    return logged, env.finish()


def test_keeping_everything_is_rescaled_to_the_uniform_plan(wall):
    _, uniform = uniform_keep_ratio(wall)
    _, result = _play(PruningEnv(wall.groups, wall, rescale=True), np.ones(len(wall.groups)))
    counts = np.array(result.keep_counts)
    assert result.corrected and wall.meets(counts)
    # one factor on equal ratios is one keep ratio: the uniform plan, up to the bisections' last step
    assert np.abs(counts / wall.n_units - uniform / wall.n_units).max() <= 0.02


def test_a_rescaled_plan_meets_the_budget_keeps_its_shape_and_leaves_no_room_for_a_larger_factor(wall):
    rng = np.random.default_rng(0)
    for _ in range(5):
        env = PruningEnv(wall.groups, wall, rescale=True)
        logged, result = _play(env, rng.uniform(size=len(wall.groups)))
        raw = np.array([env.desired_count(i, a) for i, a in enumerate(logged)]) / wall.n_units
        counts = np.array(result.keep_counts)
        assert wall.meets(counts)
        # the shape: a group that asked for more than another never ends with less, up to one unit's rounding
        ratio, unit = counts / wall.n_units, 1.0 / wall.n_units
        asked_more = raw[:, None] >= raw[None, :]
        rounding = np.maximum(unit[:, None], unit[None, :])
        assert np.all(~asked_more | (ratio[:, None] >= ratio[None, :] - rounding - 1e-12))
        # the budget is spent: 1 % more on every unclipped ratio breaks it
        factor = (counts / wall.n_units) / raw
        bigger = np.array([wall.count_for(i, min(1.0, 1.01 * f * r)) for i, (f, r) in enumerate(zip(factor, raw))])
        assert not wall.meets(bigger) or np.all(bigger == counts)
        # the logged effective actions reproduce the counts
        assert [env.desired_count(i, a) for i, a in enumerate(result.actions)] == list(result.keep_counts)


def test_the_last_groups_are_not_forced_to_the_lower_bound_as_the_wall_forces_them(wall):
    actions = np.concatenate([np.ones(len(wall.groups) // 2), np.full(len(wall.groups) - len(wall.groups) // 2, 0.5)])
    _, clipped = _play(PruningEnv(wall.groups, wall), actions)
    _, rescaled = _play(PruningEnv(wall.groups, wall, rescale=True), actions)
    tail = slice(len(wall.groups) - 5, None)
    assert np.mean((np.array(clipped.keep_counts) / wall.n_units)[tail]) <= 0.2 + 1e-9
    assert np.mean((np.array(rescaled.keep_counts) / wall.n_units)[tail]) > 0.3


def test_rescaling_refuses_budget_relative_actions(wall):
    with pytest.raises(PlanError):
        PruningEnv(wall.groups, wall, budget_relative=True, rescale=True)
    with pytest.raises(PreconditionError, match="budget-relative"):
        SearchConfig(budget_mode="rescale", action_center="budget-relative")
    with pytest.raises(PreconditionError, match="budget mode"):
        SearchConfig(budget_mode="squeeze")
