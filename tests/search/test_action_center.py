"""Actions centred on the uniform solution: action 0.5 is the uniform keep ratio, the mapping is invertible;
budget-relative actions: action 0.5 is the uniform keep ratio of the budget still left."""

from __future__ import annotations

import numpy as np
import pytest
from search_fixtures import one_torch_thread  # noqa: F401  (autouse fixture)
from trained_models import shared_model_path

from agmc_onnx.analysis import analyze_model
from agmc_onnx.groups.macs_model import MacsModel
from agmc_onnx.io import load_model
from agmc_onnx.search.budget import ActionWall, CostModel, uniform_keep_ratio
from agmc_onnx.search.env import PruningEnv
from agmc_onnx.search.features import search_order


@pytest.fixture(scope="module")
def wall():
    analysis = analyze_model(load_model(shared_model_path("mobilenetv2")))
    cost = CostModel.of_macs(MacsModel.from_analysis(analysis))
    return ActionWall(search_order(analysis), cost, 0.5 * cost.full_cost, 0.2, 8)


def test_half_action_everywhere_reproduces_the_uniform_policy(wall):
    center, counts = uniform_keep_ratio(wall)
    env = PruningEnv(wall.groups, wall, center_keep_ratio=center)
    for _ in range(env.n_steps):
        env.step(0.5)
    assert env.finish().keep_counts == tuple(int(c) for c in counts)


@pytest.mark.parametrize("center", [None, 0.3, 0.7])
def test_keep_ratio_mapping_is_monotone_and_inverted_by_action_of(wall, center):
    env = PruningEnv(wall.groups, wall, center_keep_ratio=center)
    actions = np.linspace(0.0, 1.0, 41)
    keep_ratios = [env.keep_ratio_of(a) for a in actions]
    assert keep_ratios[0] == pytest.approx(0.2) and keep_ratios[-1] == pytest.approx(1.0)
    assert np.all(np.diff(keep_ratios) > 0)
    group = wall.groups[0]
    for count in wall.choices[0]:
        assert env.keep_ratio_of(env.action_of(int(count), 0)) == pytest.approx(count / group.n_units)


def test_neutral_budget_relative_actions_give_the_uniform_plan_within_budget(wall):
    _, uniform = uniform_keep_ratio(wall)
    env = PruningEnv(wall.groups, wall, budget_relative=True)
    for _ in range(env.n_steps):
        env.step(0.5)
    result = env.finish()
    counts = np.array(result.keep_counts)
    assert not result.corrected and wall.meets(counts)
    # the uniform plan, with what its rounding left of the budget spent on later groups
    assert np.all(counts >= uniform) and np.all(counts / wall.n_units <= uniform / wall.n_units + 0.05)


def test_keeping_more_early_lowers_the_later_budget_relative_centres(wall):
    neutral, env = (PruningEnv(wall.groups, wall, budget_relative=True) for _ in range(2))
    for _ in range(8):
        neutral.step(0.5)
        env.step(1.0)
    assert env.center_of(8) < neutral.center_of(8) - 0.05
    rng = np.random.default_rng(0)
    for step in range(8, env.n_steps):
        action = env.step(float(rng.uniform()))
        assert env.desired_count(step, action) == env.counts[step]  # the logged action reproduces the count
