"""Latency budgets: the wall enforces a fitted latency model exactly like a MACs count."""

from __future__ import annotations

import numpy as np
import pytest
from search_fixtures import one_torch_thread  # noqa: F401  (autouse fixture)
from trained_models import shared_model_path

from agmc_onnx.analysis import analyze_model
from agmc_onnx.groups.macs_model import MacsModel
from agmc_onnx.io import load_model
from agmc_onnx.search import AccuracyReward, SearchConfig, run_search
from agmc_onnx.search.budget import ActionWall, CostModel
from agmc_onnx.search.env import PruningEnv
from agmc_onnx.search.features import search_order


@pytest.fixture(scope="module")
def mobilenet():
    return analyze_model(load_model(shared_model_path("mobilenetv2")))


def test_latency_cost_model_is_affine_in_dense_and_grouped_macs(mobilenet):
    macs = MacsModel.from_analysis(mobilenet)
    weights = np.where(macs.grouped, 3e-6, 1e-6)
    cost = CostModel(macs, weights, constant=0.4, unit="ms (predicted)")
    full = cost.full_cost
    dense = macs.layer_macs[~macs.grouped].sum() * 1e-6
    grouped = macs.layer_macs[macs.grouped].sum() * 3e-6
    assert full == pytest.approx(0.4 + dense + grouped)
    keep = np.full(len(macs.group_ids), 0.5)
    assert 0.4 < cost.cost(keep) < full


def test_every_episode_meets_a_latency_model_budget(mobilenet):
    macs = MacsModel.from_analysis(mobilenet)
    cost = CostModel(macs, np.where(macs.grouped, 3e-6, 1e-6), constant=0.4, unit="ms (predicted)")
    wall = ActionWall(search_order(mobilenet), cost, 0.6 * cost.full_cost, 0.2, 8)
    env = PruningEnv(wall.groups, wall)
    rng = np.random.default_rng(0)
    for _ in range(20):
        env.reset()
        for _ in range(env.n_steps):
            env.step(float(rng.uniform()))
        assert env.finish().cost_fraction <= 0.6 + 1e-9


@pytest.mark.slow
def test_latency_search_on_a_measured_model_reports_predictions():
    model = load_model(shared_model_path("resnet20"))
    analysis = analyze_model(model)
    from agmc_onnx.data import load_splits, sample_subset, spec_from_model
    from agmc_onnx.models.zoo import demo_data_path

    spec = spec_from_model(model)
    reward_set = sample_subset(load_splits(demo_data_path(), spec, reward_size=200).reward, 64)
    config = SearchConfig(
        policy="random",
        n_episodes=3,
        flops_keep_ratio=None,
        latency_keep_ratio=0.9,
        latency_seconds=0.3,
        latency_model="fit",
    )
    result = run_search(analysis, AccuracyReward(analysis, reward_set, spec), config)
    fit = result.latency_fit
    assert fit is not None and len(fit.measured_ms) == 5 and fit.original_ms > 0
    assert all(r.predicted_latency_ms <= 0.9 * fit.original_ms + 1e-9 for r in result.records)
    assert result.plan.metadata["search"]["predicted_latency_ms"] is not None
