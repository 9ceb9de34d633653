"""The search loop: budget met every episode, valid pruned models for every policy, exact resume."""

from __future__ import annotations

import dataclasses
import json

import pytest
from search_fixtures import SPEC, labelled_by_model, one_torch_thread, tiny_classifier  # noqa: F401  (autouse fixture)
from trained_models import shared_model_path

from agmc_onnx.analysis import analyze_model
from agmc_onnx.data import load_splits, sample_subset, spec_from_model
from agmc_onnx.importance import channel_scores
from agmc_onnx.io import load_model
from agmc_onnx.models.zoo import demo_data_path
from agmc_onnx.plan import PruningPlan, select_channels
from agmc_onnx.prune import apply_selection
from agmc_onnx.search import AccuracyReward, DDPGConfig, EncoderConfig, RunDirectory, SearchConfig, run_search
from agmc_onnx.validate import validate_pruned

FAST_DDPG = DDPGConfig(warmup_episodes=2, batch_size=16)
FAST_ENCODER = EncoderConfig(pretrain_epochs=20)
TIMING_FIELDS = ("eval_seconds", "episode_seconds")


def _config(policy: str, n_episodes: int, **changes) -> SearchConfig:
    return SearchConfig(policy=policy, n_episodes=n_episodes, ddpg=FAST_DDPG, encoder=FAST_ENCODER, **changes)


@pytest.fixture(scope="module")
def tiny():
    model = tiny_classifier()
    return model, analyze_model(model), labelled_by_model(model)


@pytest.fixture(scope="module")
def resnet20():
    model = load_model(shared_model_path("resnet20"))
    spec = spec_from_model(model)
    reward_set = load_splits(demo_data_path(), spec, reward_size=200).reward
    return model, analyze_model(model), sample_subset(reward_set, 64), spec


def _without_timing(records) -> list[dict]:
    return [{k: v for k, v in dataclasses.asdict(r).items() if k not in TIMING_FIELDS} for r in records]


@pytest.mark.parametrize("policy", ["agmc", "amc", "uniform", "random"])
def test_every_policy_meets_the_budget_and_yields_a_valid_pruned_model(resnet20, policy):
    model, analysis, reward_set, spec = resnet20
    reward = AccuracyReward(analysis, reward_set, spec)
    result = run_search(analysis, reward, _config(policy, 4, flops_keep_ratio=0.5))
    assert all(r.macs_kept_fraction <= 0.5 + 1e-9 for r in result.records)
    assert len(result.records) == (1 if policy == "uniform" else 4)
    assert result.best_reward == max(r.reward for r in result.records)
    plan = PruningPlan.from_json(result.plan.to_json())  # what `agmc-onnx prune --ratios` reads
    assert plan.keep_ratios == result.plan.keep_ratios and plan.round_to == 8
    selection = select_channels(plan, analysis.groups, channel_scores(analysis))
    pruned, _ = apply_selection(analysis, selection)
    assert validate_pruned(model, analysis, selection, pruned).passed
    assert all(len(keep) % 8 == 0 for keep in selection.keep_units.values())


def test_agmc_trains_its_encoder_through_the_critic(tiny):
    _, analysis, dataset = tiny
    reward = AccuracyReward(analysis, dataset, SPEC)
    result = run_search(analysis, reward, _config("agmc", 4, round_to=1))
    assert len(result.encoder_loss) == FAST_ENCODER.pretrain_epochs
    updated = [r.losses for r in result.records if r.losses]
    assert updated and all(loss["reconstruction"] > 0 and loss["critic_loss"] >= 0 for loss in updated)


def test_identical_kept_sets_are_evaluated_once(tiny):
    _, analysis, dataset = tiny
    reward = AccuracyReward(analysis, dataset, SPEC)
    result = run_search(analysis, reward, _config("random", 12, flops_keep_ratio=0.9, round_to=8))
    distinct = {r.keep_ratios for r in result.records}
    assert result.n_evaluations == len(distinct) < len(result.records)
    assert sum(r.cached for r in result.records) == len(result.records) - len(distinct)


@pytest.mark.parametrize(
    ("action_center", "budget_mode"), [("none", "wall"), ("budget-relative", "wall"), ("none", "rescale")]
)
def test_interrupted_search_resumes_to_the_same_log(tiny, tmp_path, action_center, budget_mode):
    _, analysis, dataset = tiny
    config = _config("agmc", 5, round_to=1, action_center=action_center, budget_mode=budget_mode)
    straight = run_search(
        analysis, AccuracyReward(analysis, dataset, SPEC), config, run_dir=tmp_path / "straight"
    )

    def crash_after_third(event):
        if event.record.episode == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_search(
            analysis,
            AccuracyReward(analysis, dataset, SPEC),
            config,
            run_dir=tmp_path / "cut",
            progress=crash_after_third,
        )
    assert len(RunDirectory(tmp_path / "cut").read_log()) == 3
    resumed = run_search(
        analysis, AccuracyReward(analysis, dataset, SPEC), config, run_dir=tmp_path / "cut", resume=True
    )
    assert _without_timing(resumed.records) == _without_timing(straight.records)
    assert _without_timing(RunDirectory(tmp_path / "cut").read_log()) == _without_timing(straight.records)
    assert resumed.plan.keep_ratios == straight.plan.keep_ratios


def test_resume_with_other_settings_is_refused(tiny, tmp_path):
    _, analysis, dataset = tiny
    run_search(analysis, AccuracyReward(analysis, dataset, SPEC), _config("random", 2), run_dir=tmp_path)
    with pytest.raises(Exception, match="seed differ"):
        run_search(
            analysis,
            AccuracyReward(analysis, dataset, SPEC),
            _config("random", 3, seed=1),
            run_dir=tmp_path,
            resume=True,
        )
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["seed"] == 0 and stored["policy"] == "random"
