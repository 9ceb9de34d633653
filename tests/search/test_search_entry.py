"""``search_model``, the one entry the CLI, ``compress`` and the benchmarks share: same plan as the loop
it wraps, one budget check, one warm-up rule, and policy choices that are the policy registry."""

from __future__ import annotations

import pytest
from search_fixtures import SPEC, labelled_by_model, one_torch_thread, tiny_classifier  # noqa: F401  (autouse fixture)

from agmc_onnx.analysis import analyze_model
from agmc_onnx.compress.config import CompressConfig
from agmc_onnx.errors import PreconditionError
from agmc_onnx.search import (
    POLICY_NAMES,
    AccuracyReward,
    DDPGConfig,
    SearchConfig,
    run_search,
    scaled_warmup,
    search_model,
)
from agmc_onnx.search.policies import POLICIES


@pytest.mark.parametrize("policy", ["amc", "random"])
def test_search_model_gives_the_plan_of_the_loop_it_wraps(policy):
    model = tiny_classifier()
    analysis, reward_set = analyze_model(model), labelled_by_model(model)
    config = SearchConfig(
        policy=policy, n_episodes=3, flops_keep_ratio=0.6, round_to=4, ddpg=DDPGConfig(warmup_episodes=2)
    )
    direct = run_search(analysis, AccuracyReward(analysis, reward_set, SPEC), config)
    entry = search_model(model, reward_set, config, spec=SPEC)
    assert entry.plan.keep_ratios == direct.plan.keep_ratios
    assert [r.reward for r in entry.records] == [r.reward for r in direct.records]
    assert entry.plan.metadata["search"]["reward_images"] == reward_set.n_images
    assert entry.plan.metadata["search"]["reward_bn_recalibrated"] is True
    best = entry.best_model()
    assert len(best.graph.initializer) > 0 and best is not model


def test_the_warm_up_is_decided_once_for_the_cli_and_compress():
    for episodes in (3, 8, 40, 100, 300):
        search = SearchConfig(n_episodes=episodes)
        compress = CompressConfig(episodes=episodes).search_config()
        assert search.ddpg.warmup_episodes == compress.ddpg.warmup_episodes == scaled_warmup(episodes)
    assert scaled_warmup(100) == 25 and scaled_warmup(8) == 2
    assert SearchConfig(n_episodes=8, ddpg=DDPGConfig(warmup_episodes=5)).ddpg.warmup_episodes == 5


def test_one_budget_check_serves_search_and_compress():
    for make in (
        lambda: SearchConfig(flops_keep_ratio=0.5, latency_keep_ratio=0.5),
        lambda: CompressConfig(flops=0.5, latency=0.5),
    ):
        with pytest.raises(PreconditionError, match="exactly one budget"):
            make()
    with pytest.raises(PreconditionError, match=r"in \(0, 1\]"):
        CompressConfig(latency=1.5)
    assert CompressConfig().budget == ("flops", 0.5)
    assert CompressConfig(latency=0.7).search_config().budget == ("latency", 0.7)


def test_policy_choices_are_the_policy_registry():
    assert set(POLICIES) == set(POLICY_NAMES)
