"""Rounds of K episodes and rewards on Ray workers: the same log as in this process, exact resume in the
middle of a round, failed workers retried, and one clear error for what cannot go on.

One test that starts Ray runs in the default suite, so the optional extra is exercised wherever the `dev`
extra is installed (about 35 s with the runtime's start-up on one idle core); the rest start Ray too and
are marked slow (`pytest -m slow tests/search/test_parallel_search.py`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest
from search_fixtures import SPEC, labelled_by_model, one_torch_thread, tiny_classifier  # noqa: F401  (autouse fixture)

from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import AgmcError
from agmc_onnx.search import AccuracyReward, DDPGConfig, EncoderConfig, RunDirectory, SearchConfig, run_search
from agmc_onnx.search.evaluation import WorkerNotice

TIMING_FIELDS = ("eval_seconds", "episode_seconds")


def _config(policy: str, n_episodes: int, **changes) -> SearchConfig:
    fast = {"ddpg": DDPGConfig(warmup_episodes=2, batch_size=16), "encoder": EncoderConfig(pretrain_epochs=20)}
    return SearchConfig(policy=policy, n_episodes=n_episodes, **{"round_to": 1, **fast, **changes})


def _log(records) -> list[dict]:
    return [{k: v for k, v in dataclasses.asdict(r).items() if k not in TIMING_FIELDS} for r in records]


@pytest.fixture(scope="module")
def tiny():
    model = tiny_classifier()
    analysis = analyze_model(model)
    return analysis, labelled_by_model(model)


def _reward(tiny):
    analysis, dataset = tiny
    return AccuracyReward(analysis, dataset, SPEC)


class FailingReward:
    """Scores with ``reward``; fails (raises, or kills its process) on calls listed in ``fail_on``.

    Calls are numbered by files created exclusively in ``calls``, so the count spans every worker process.
    """

    def __init__(self, reward, calls: Path, fail_on: range, how: str = "raise") -> None:
        self.reward, self.calls, self.fail_on, self.how = reward, calls, fail_on, how
        self.cache = reward.cache
        calls.mkdir(exist_ok=True)

    def _number(self) -> int:
        for number in range(1000):
            try:
                os.close(os.open(self.calls / str(number), os.O_CREAT | os.O_EXCL))
                return number
            except FileExistsError:
                continue
        raise AssertionError("too many calls")

    def __call__(self, selection):
        if self._number() in self.fail_on:
            if self.how == "exit":
                os._exit(3)
            raise RuntimeError("simulated worker failure")
        return self.reward(selection)


@pytest.mark.slow
def test_ray_rounds_give_the_in_process_log(tiny, ray_runtime):
    """A policy that does not learn acts the same whatever K is: 1 episode per round in this process and
    3 per round on Ray give one log, cache hits included; 3 workers on 2 cores are warned about."""
    config = _config("random", 8, flops_keep_ratio=0.9, round_to=8)
    sequential = run_search(tiny[0], _reward(tiny), config)
    events = []
    parallel = run_search(tiny[0], _reward(tiny), dataclasses.replace(config, workers=3, episodes_per_round=3),
                          progress=events.append)
    assert _log(parallel.records) == _log(sequential.records)
    assert any(r.cached for r in parallel.records)  # identical kept sets met within and across rounds
    assert parallel.n_evaluations == sequential.n_evaluations
    assert any(isinstance(e, WorkerNotice) and "3 workers share 2 cores" in e.message for e in events)


class PickleCounting:
    """A reward that counts how often this process serialises it (to ship it to workers)."""

    def __init__(self, reward) -> None:
        self.reward, self.cache, self.pickled = reward, reward.cache, 0

    def __getstate__(self) -> dict:
        self.pickled += 1
        return {"reward": self.reward, "cache": self.cache, "pickled": 0}

    def __call__(self, selection):
        return self.reward(selection)


def test_same_seed_and_k_give_the_same_log_in_process_and_on_ray(tiny, ray_runtime, tmp_path):
    config = _config("amc", 4, episodes_per_round=2)
    local = run_search(tiny[0], _reward(tiny), config)
    shipped = PickleCounting(_reward(tiny))
    on_ray = run_search(tiny[0], shipped, dataclasses.replace(config, workers=2), run_dir=tmp_path)
    assert shipped.pickled == 1  # model and reward images go to the object store once, not per episode
    assert _log(on_ray.records) == _log(local.records)
    assert _log(RunDirectory(tmp_path).read_log()) == _log(local.records)
    one_per_round = run_search(tiny[0], _reward(tiny), dataclasses.replace(config, episodes_per_round=1))
    assert _log(one_per_round.records) != _log(local.records)  # the agent learns between rounds


def test_interrupted_in_the_middle_of_a_round_resumes_exactly(tiny, tmp_path):
    config = _config("amc", 6, episodes_per_round=3)
    straight = run_search(tiny[0], _reward(tiny), config)

    def stop_after_fifth(event):
        if event.record.episode == 4:  # rounds are episodes 0-2 and 3-5: this is the middle of the second
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_search(tiny[0], _reward(tiny), config, run_dir=tmp_path, progress=stop_after_fifth)
    assert len(RunDirectory(tmp_path).read_log()) == 5
    resumed = run_search(tiny[0], _reward(tiny), config, run_dir=tmp_path, resume=True)
    assert _log(resumed.records) == _log(straight.records)
    assert _log(RunDirectory(tmp_path).read_log()) == _log(straight.records)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["raise", "exit"])
def test_a_failed_worker_is_retried_and_nothing_is_dropped(tiny, ray_runtime, tmp_path, how):
    config = _config("random", 4)
    expected = run_search(tiny[0], _reward(tiny), config)
    reward = FailingReward(_reward(tiny), tmp_path / "calls", range(1, 2), how)
    events = []
    result = run_search(tiny[0], reward, dataclasses.replace(config, workers=2), progress=events.append)
    assert _log(result.records) == _log(expected.records)
    notices = [e.message for e in events if isinstance(e, WorkerNotice)]
    where = "died" if how == "exit" else "failed"
    assert len(notices) == 1 and f"a worker {where} evaluating episode" in notices[0] and "(2/3)" in notices[0]


@pytest.mark.slow
def test_a_reward_that_keeps_failing_stops_at_the_last_whole_round(tiny, ray_runtime, tmp_path):
    reward = FailingReward(_reward(tiny), tmp_path / "calls", range(2, 100))
    config = _config("random", 6, workers=2)
    with pytest.raises(AgmcError, match=r"episode \d failed on 3 workers \(last: RuntimeError: simulated"):
        run_search(tiny[0], reward, config, run_dir=tmp_path / "run")
    assert len(RunDirectory(tmp_path / "run").read_log()) == 2  # the first round; nothing of the second
    resumed = run_search(tiny[0], _reward(tiny), config, run_dir=tmp_path / "run", resume=True)
    assert _log(resumed.records) == _log(run_search(tiny[0], _reward(tiny), config).records)


def test_workers_without_ray_installed_is_one_clear_error(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without the extra sees
    with pytest.raises(AgmcError, match=r"needs Ray, which is not installed: pip install 'agmc-onnx\[ray\]'"):
        run_search(tiny[0], _reward(tiny), _config("random", 2, workers=2))


def test_an_unreachable_cluster_is_one_clear_error(tiny, tmp_path):
    with pytest.raises(AgmcError, match="cannot reach the Ray cluster at 127.0.0.1:9"):
        run_search(tiny[0], _reward(tiny), _config("random", 2, ray_address="127.0.0.1:9"), run_dir=tmp_path)
    assert RunDirectory(tmp_path).read_log() == []


def _search_args(tmp_path, *extra):
    from agmc_onnx.models.zoo import demo_data_path, zoo_model_path

    return ["search", str(zoo_model_path("resnet20")), "--data", str(demo_data_path()), "--flops", "0.5",
            "--reward-size", "16", "--episodes", "2", "--policy", "random", "-o", str(tmp_path / "p.json"), *extra]


def test_cli_workers_without_ray_or_cluster_is_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from agmc_onnx.cli.main import cli

    unreachable = CliRunner().invoke(cli, _search_args(tmp_path, "--ray-address", "127.0.0.1:9"))
    assert unreachable.exit_code == 1 and "Traceback" not in unreachable.output
    assert unreachable.output.strip().splitlines()[-1].startswith("Error: cannot reach the Ray cluster at 127.0.0.1:9")
    monkeypatch.setitem(sys.modules, "ray", None)
    missing = CliRunner().invoke(cli, _search_args(tmp_path, "--workers", "2"))
    assert missing.exit_code == 1 and "pip install 'agmc-onnx[ray]'" in missing.output
    assert not (tmp_path / "p.json").exists()


def test_compress_reads_workers_from_its_toml(tmp_path):
    from agmc_onnx.compress.config import CompressConfig, read_toml

    (tmp_path / "c.toml").write_text('[compress]\nworkers = 4\nray-address = "head:6379"\n')
    search = CompressConfig(**read_toml(tmp_path / "c.toml")).search_config()
    assert (search.workers, search.episodes_per_round, search.ray_address) == (4, 4, "head:6379")
