"""A learned agent saved on one network and started on another with a different number of layers."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from search_fixtures import one_torch_thread  # noqa: F401  (autouse fixture)
from trained_models import shared_model_path

from agmc_onnx.analysis import analyze_model
from agmc_onnx.cli.main import cli
from agmc_onnx.data import load_splits, sample_subset, spec_from_model
from agmc_onnx.errors import AgmcError
from agmc_onnx.io import load_model
from agmc_onnx.models.zoo import demo_data_path
from agmc_onnx.search import AccuracyReward, DDPGConfig, EncoderConfig, SearchConfig, run_search
from agmc_onnx.search.transfer import load_agent, save_agent

FAST = {"ddpg": DDPGConfig(warmup_episodes=1, batch_size=16), "encoder": EncoderConfig(pretrain_epochs=10)}


def _network(name: str):
    model = load_model(shared_model_path(name))
    spec = spec_from_model(model)
    reward_set = sample_subset(load_splits(demo_data_path(), spec, reward_size=64).reward, 32)
    analysis = analyze_model(model)
    return analysis, AccuracyReward(analysis, reward_set, spec)


@pytest.fixture(scope="module")
def networks():
    return {name: _network(name) for name in ("resnet20", "resnet56")}


@pytest.mark.slow
def test_an_agmc_agent_trained_on_resnet20_drives_resnet56(networks, tmp_path):
    """The amc agent's transfer runs through the CLI test below."""
    source, target = networks["resnet20"], networks["resnet56"]
    assert len(target[0].prunable_groups) > len(source[0].prunable_groups)
    trained = run_search(*source, SearchConfig(policy="agmc", n_episodes=2, **FAST))
    save_agent(trained.agent, tmp_path / "agent.pt")
    applied = run_search(*target, SearchConfig(policy="agmc", n_episodes=0, agent=str(tmp_path / "agent.pt"), **FAST))
    assert len(applied.records) == 1 and applied.records[0].exploration_sigma == 0.0
    assert applied.encoder_loss == ()  # the transferred encoder is not pre-trained again
    for part in ("actor", "critic"):
        for key, value in trained.agent[part].items():
            assert torch.equal(applied.agent[part][key], value)  # applied as is: loaded and not updated
    assert applied.records[0].macs_kept_fraction <= 0.5 + 1e-9
    for key, value in trained.agent["encoder"]["encoder"].items():
        assert torch.equal(applied.agent["encoder"]["encoder"][key], value)


@pytest.mark.slow
def test_a_transferred_agent_acts_and_learns_from_the_first_episode(networks, tmp_path):
    trained = run_search(*networks["resnet20"], SearchConfig(policy="agmc", n_episodes=2, **FAST))
    save_agent(trained.agent, tmp_path / "agent.pt")
    fast = {**FAST, "ddpg": DDPGConfig(batch_size=16)}  # the warm-up left to the default
    config = SearchConfig(policy="agmc", n_episodes=1, agent=str(tmp_path / "agent.pt"), **fast)
    tuned = run_search(*networks["resnet56"], config)
    assert tuned.records[0].exploration_sigma == 0.0  # no warm-up: the agent acts at once, first as is
    assert not torch.equal(tuned.agent["actor"]["0.0.weight"], trained.agent["actor"]["0.0.weight"])


def test_an_agent_of_another_kind_or_file_is_refused(networks, tmp_path):
    trained = run_search(*networks["resnet20"], SearchConfig(policy="amc", n_episodes=1, **FAST))
    save_agent(trained.agent, tmp_path / "amc.pt")
    with pytest.raises(AgmcError, match="saved agent is an amc agent; this search's policy is agmc"):
        run_search(*networks["resnet20"], SearchConfig(policy="agmc", n_episodes=0, agent=str(tmp_path / "amc.pt")))
    (tmp_path / "junk.pt").write_bytes(b"not an agent")
    with pytest.raises(AgmcError, match="is not an agent saved by --save-agent"):
        load_agent(tmp_path / "junk.pt")
    with pytest.raises(AgmcError, match="random policy has no agent to load"):
        run_search(*networks["resnet20"], SearchConfig(policy="random", n_episodes=1, agent=str(tmp_path / "amc.pt")))
    with pytest.raises(AgmcError, match="0 applies a saved agent"):
        SearchConfig(policy="agmc", n_episodes=0)


def test_cli_saves_an_agent_and_applies_it_to_another_network(tmp_path):
    data = str(demo_data_path())
    common = ["--data", data, "--flops", "0.5", "--reward-size", "32", "--policy", "amc"]
    saved = CliRunner().invoke(
        cli,
        ["search", str(shared_model_path("resnet20")), *common, "--episodes", "2", "--save-agent",
         str(tmp_path / "agent.pt"), "-o", str(tmp_path / "a.json")],
    )
    assert saved.exit_code == 0, saved.output
    applied = CliRunner().invoke(
        cli,
        ["search", str(shared_model_path("resnet56")), *common, "--episodes", "0", "--agent",
         str(tmp_path / "agent.pt"), "-o", str(tmp_path / "b.json")],
    )
    assert applied.exit_code == 0, applied.output
    plan = json.loads((tmp_path / "b.json").read_text())
    assert plan["metadata"]["search"]["episodes"] == 1
    refused = CliRunner().invoke(
        cli, ["search", str(shared_model_path("resnet56")), *common, "--episodes", "0", "-o", str(tmp_path / "c.json")]
    )
    assert refused.exit_code == 2 and "--episodes 0 needs --agent" in refused.output
    random_save = CliRunner().invoke(
        cli,
        ["search", str(shared_model_path("resnet20")), *common[:-2], "--policy", "random", "--episodes", "1",
         "--save-agent", str(tmp_path / "r.pt"), "-o", str(tmp_path / "r.json")],
    )
    assert random_save.exit_code == 2 and "learns no agent" in random_save.output


def test_a_saved_agent_applied_to_its_own_network_plays_the_best_plan_again(networks, tmp_path):
    """The saved actor is fitted to the best episode (``imitation``): the DDPG actor alone would not replay it."""
    trained = run_search(*networks["resnet20"], SearchConfig(policy="agmc", n_episodes=6, **FAST))
    (demo,) = trained.agent["demonstrations"]
    assert demo["reward"] == trained.best_reward and len(demo["action"]) == len(trained.plan.keep_ratios)
    save_agent(trained.agent, tmp_path / "agent.pt")
    as_is = SearchConfig(policy="agmc", n_episodes=0, agent=str(tmp_path / "agent.pt"), **FAST)
    applied = run_search(*networks["resnet20"], as_is)
    assert applied.plan.keep_ratios == trained.plan.keep_ratios
    assert applied.best_reward == trained.best_reward


def test_an_agent_carries_one_demonstration_per_network_it_searched(networks, tmp_path):
    first = run_search(*networks["resnet20"], SearchConfig(policy="agmc", n_episodes=2, **FAST))
    save_agent(first.agent, tmp_path / "a.pt")
    second = run_search(*networks["resnet56"], SearchConfig(policy="agmc", n_episodes=2, agent=str(tmp_path / "a.pt"),
                                                            **FAST))
    assert [d["reward"] for d in second.agent["demonstrations"]] == [first.best_reward, second.best_reward]
    save_agent(second.agent, tmp_path / "b.pt")
    again = run_search(*networks["resnet20"], SearchConfig(policy="agmc", n_episodes=2, agent=str(tmp_path / "b.pt"),
                                                           **FAST))
    networks_seen = [d["network"] for d in again.agent["demonstrations"]]
    assert len(networks_seen) == 2 and networks_seen[-1] == first.agent["demonstrations"][0]["network"]
    assert again.agent["demonstrations"][-1]["reward"] == again.best_reward  # its own best replaced the older one


def test_a_transferred_search_starts_with_the_policy_as_is(networks, tmp_path):
    """Episode 0 has no exploration noise, so a short search from a saved agent scores at least its policy."""
    trained = run_search(*networks["resnet20"], SearchConfig(policy="agmc", n_episodes=3, **FAST))
    save_agent(trained.agent, tmp_path / "agent.pt")
    start = {"agent": str(tmp_path / "agent.pt"), **FAST, "ddpg": DDPGConfig(batch_size=16)}  # no warm-up
    as_is = run_search(*networks["resnet56"], SearchConfig(policy="agmc", n_episodes=0, **start))
    searched = run_search(*networks["resnet56"], SearchConfig(policy="agmc", n_episodes=3, **start))
    assert searched.records[0].exploration_sigma == 0.0 and searched.records[1].exploration_sigma > 0.0
    assert searched.records[0].keep_ratios == as_is.records[0].keep_ratios
    assert searched.best_reward >= as_is.best_reward


def test_a_transferred_search_alternates_local_and_wide_exploration(networks, tmp_path):
    """Every other episode of a search from a saved agent explores as widely as a search from scratch, so a plan
    that transferred poorly is not all it searches around; a search from scratch keeps one σ."""
    trained = run_search(*networks["resnet20"], SearchConfig(policy="agmc", n_episodes=2, **FAST))
    save_agent(trained.agent, tmp_path / "agent.pt")
    start = {"agent": str(tmp_path / "agent.pt"), **FAST, "ddpg": DDPGConfig(batch_size=16)}  # no warm-up
    config = SearchConfig(policy="agmc", n_episodes=5, **start)
    sigmas = [record.exploration_sigma for record in run_search(*networks["resnet56"], config).records]
    ddpg = config.ddpg
    assert ddpg.sigma_wide > ddpg.sigma_start > 0
    decay = [ddpg.sigma_decay**episode for episode in range(5)]
    wide, local = ddpg.sigma_wide, ddpg.sigma_start
    assert sigmas == pytest.approx([0.0, wide * decay[1], local * decay[2], wide * decay[3], local * decay[4]])
    scratch = SearchConfig(n_episodes=8).ddpg
    assert scratch.sigma_wide == 0.0
    first = scratch.warmup_episodes
    expected = [scratch.sigma_start * scratch.sigma_decay ** (e - first) for e in range(first, 8)]
    assert [scratch.sigma(e) for e in range(first, 8)] == pytest.approx(expected)


def test_an_agent_saved_before_demonstrations_is_still_read(networks, tmp_path):
    trained = run_search(*networks["resnet20"], SearchConfig(policy="agmc", n_episodes=2, **FAST))
    older = {key: value for key, value in trained.agent.items() if key != "demonstrations"}
    save_agent({**older, "format": 1}, tmp_path / "old.pt")
    as_is = SearchConfig(policy="agmc", n_episodes=0, agent=str(tmp_path / "old.pt"), **FAST)
    applied = run_search(*networks["resnet56"], as_is)
    assert len(applied.records) == 1 and applied.agent["demonstrations"] == []


def test_a_transferred_search_keeps_its_actor_at_the_best_plan_so_far(networks, tmp_path):
    """Without exploration, the first DDPG updates from a saved agent would drag the actor to other plans, and
    the encoder's would move the states under it; with the encoder fixed and the best plan so far imitated (both
    the default from a saved agent), the actor keeps playing that plan."""
    trained = run_search(*networks["resnet20"], SearchConfig(policy="agmc", n_episodes=3, **FAST))
    save_agent(trained.agent, tmp_path / "agent.pt")

    def searched(**ddpg):
        config = SearchConfig(policy="agmc", n_episodes=3, agent=str(tmp_path / "agent.pt"), encoder=FAST["encoder"],
                              ddpg=DDPGConfig(batch_size=16, sigma_start=0.0, sigma_wide=0.0, **ddpg))
        return [record.keep_ratios for record in run_search(*networks["resnet56"], config).records]

    transferred = SearchConfig(agent=str(tmp_path / "agent.pt")).ddpg
    assert transferred.imitation_weight > 0 and transferred.encoder_lr == 0.0
    scratch = SearchConfig().ddpg  # a search from scratch is AMC's DDPG, its encoder trained (AGMC)
    assert scratch.imitation_weight == 0.0 and scratch.encoder_lr > 0
    held = searched()
    assert held[1] == held[0] and held[2] == held[0]
    assert searched(imitation_weight=0.0)[1:] != held[1:]
    assert searched(encoder_lr=scratch.encoder_lr)[1:] != held[1:]
