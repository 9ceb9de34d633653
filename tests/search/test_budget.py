"""The action wall: every episode meets the MACs budget; unreachable budgets fail clearly."""

from __future__ import annotations

import numpy as np
import pytest
from search_fixtures import one_torch_thread, random_episodes, tiny_classifier  # noqa: F401  (autouse fixture)
from trained_models import shared_model_path

from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import BudgetUnreachableError
from agmc_onnx.groups.macs_model import MacsModel
from agmc_onnx.io import load_model
from agmc_onnx.plan import kept_unit_count
from agmc_onnx.search.budget import ActionWall, CostModel, allowed_counts, uniform_keep_ratio
from agmc_onnx.search.env import PruningEnv
from agmc_onnx.search.features import search_order


@pytest.fixture(scope="module")
def resnet20():
    return analyze_model(load_model(shared_model_path("resnet20")))


def _wall(analysis, keep_macs: float, round_to: int = 8, lower_bound: float = 0.2) -> ActionWall:
    cost = CostModel.of_macs(MacsModel.from_analysis(analysis))
    return ActionWall(search_order(analysis), cost, keep_macs * cost.full_cost, lower_bound, round_to)


def test_cost_model_with_unit_weights_is_the_exact_macs_model(resnet20):
    macs = MacsModel.from_analysis(resnet20)
    keep = np.random.default_rng(0).uniform(0.2, 1.0, len(macs.group_ids))
    assert CostModel.of_macs(macs).cost(keep) == pytest.approx(macs.macs(keep), rel=1e-12)


@pytest.mark.parametrize("keep_macs", [0.3, 0.5, 0.8])
@pytest.mark.parametrize("round_to", [1, 8])
def test_every_random_episode_meets_the_budget(resnet20, keep_macs, round_to):
    wall = _wall(resnet20, keep_macs, round_to)
    env = PruningEnv(wall.groups, wall)
    rng = np.random.default_rng(1)
    macs = MacsModel.from_analysis(resnet20)
    for _ in range(30):
        env.reset()
        for _ in range(env.n_steps):
            env.step(float(rng.uniform()))
        outcome = env.finish()
        keep = {
            g.id: kept_unit_count(g, c / g.n_units, round_to) / g.n_units
            for g, c in zip(wall.groups, outcome.keep_counts)
        }
        assert macs.macs(keep) <= keep_macs * macs.total + 1e-6
        assert outcome.cost_fraction <= keep_macs + 1e-9


@pytest.mark.parametrize("importance", ["l1", "random"])
def test_the_wall_of_units_with_unequal_macs_is_what_the_written_model_counts(importance):
    """ShuffleNetV2 stream: the wall ranks units by the search's importance, so each episode's cost is the
    MACs of the model its plan writes, and the budget holds there."""
    import tiny_models

    from agmc_onnx.importance import channel_scores
    from agmc_onnx.prune import prune_model
    from agmc_onnx.search.budget import macs_wall

    model = tiny_models.shufflenet_v2_stream()
    analysis = analyze_model(model)
    scores = channel_scores(analysis, importance)
    wall = macs_wall(analysis, search_order(analysis), 0.5, 0.2, 1, scores=scores)
    env = PruningEnv(wall.groups, wall, importance, scores=scores)
    rng = np.random.default_rng(2)
    for _ in range(4):
        env.reset()
        for _ in range(env.n_steps):
            env.step(float(rng.uniform()))
        outcome = env.finish()
        pruned = prune_model(model, env.plan(outcome.keep_counts), analysis=analysis).model
        counted = analyze_model(pruned).total_macs
        assert counted == pytest.approx(wall.cost(np.array(outcome.keep_counts)), rel=1e-12)
        assert counted <= 0.5 * analysis.total_macs


def test_kept_counts_respect_round_to_and_lower_bound(resnet20):
    for group in search_order(resnet20):
        counts = allowed_counts(group, 0.2, 8)
        assert counts[0] >= 0.2 * group.n_units
        assert all(c % 8 == 0 or c == group.n_units for c in counts)
        assert counts[-1] == group.n_units


def test_enforce_shrinks_an_over_budget_policy_until_it_fits(resnet20):
    wall = _wall(resnet20, 0.5)
    corrected = wall.enforce(wall.n_units)
    assert wall.meets(corrected)
    assert not wall.meets(wall.n_units)
    assert np.all(corrected >= wall.min_counts)


def test_uniform_keep_ratio_is_the_largest_that_fits(resnet20):
    wall = _wall(resnet20, 0.5, round_to=1)
    keep_ratio, counts = uniform_keep_ratio(wall)
    assert wall.meets(counts)
    above = np.array([wall.count_for(i, keep_ratio + 0.01) for i in range(len(wall.groups))])
    assert not wall.meets(above)


def test_unreachable_budget_raises_a_clear_error():
    analysis = analyze_model(tiny_classifier())
    with pytest.raises(BudgetUnreachableError, match=r"lower bound 0\.5.*keeps .*%"):
        _wall(analysis, 0.05, round_to=1, lower_bound=0.5)


def test_step_counts_replace_round_to_per_group_on_its_grid(resnet20):
    groups = search_order(resnet20)
    steps = {groups[0].id: (4, 10, 16), groups[1].id: (2, 12)}  # 2 is under the lower bound: dropped
    cost = CostModel.of_macs(MacsModel.from_analysis(resnet20))
    # round_to 8: only the steps that are multiples of 8 stay (plus the full width)
    coarse = ActionWall(groups, cost, 0.6 * cost.full_cost, 0.2, 8, step_counts={groups[0].id: (4, 8, 10, 16)})
    assert coarse.choices[0].tolist() == [8, 16] and coarse.plan_round_to == 1
    wall = ActionWall(groups, cost, 0.6 * cost.full_cost, 0.2, 2, step_counts=steps)
    assert wall.choices[0].tolist() == [4, 10, 16]
    assert wall.choices[1].tolist() == [12, groups[1].n_units]
    assert wall.count_for(0, 0.5) == 10  # the smallest step keeping at least half
    for outcome in random_episodes(wall, 10):
        assert outcome.keep_counts[0] in (4, 10, 16) and outcome.keep_counts[1] in (12, groups[1].n_units)
