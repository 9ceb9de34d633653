"""What parallel reward evaluation on Ray costs and saves, measured in one run.

    flock /tmp/agmc-heavy.lock nice -n 0 python benchmarks/search_scale.py --data ../shared/data/cifar10 \\
        -o benchmarks/results/search_scale

1. Orchestration overhead: ResNet-56's search loop (random policy, so the agent's own updates do not
   dominate) with a zero-cost reward, in this process (the baseline) and on 1, 2, 4 and 8 Ray workers
   (K = workers episodes per round). Seconds per episode are taken from the end of the first round to the
   end of the last, so actor start-up is left out (it is reported separately, as is Ray's start-up).
2. Wall time of a short agmc search on ResNet-56 (reward: top-1 on ``--reward-size`` held-out train images
   after BN re-estimation) with 1 worker (in this process) and 2 local Ray workers (K = 2).

Everything is wall time on this machine under whatever else runs on it; the output states the load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from agmc_onnx.analysis import analyze_model
from agmc_onnx.data import load_splits, spec_from_model
from agmc_onnx.io import load_model, write_bytes_atomic
from agmc_onnx.search import RewardConfig, RewardSample, SearchConfig, run_search, search_model
from agmc_onnx.search.evaluation import WorkerNotice
from agmc_onnx.search.log import EpisodeProgress

SHARED_MODELS = Path(__file__).resolve().parents[1] / ".." / "shared" / "models"


@dataclass(frozen=True)
class ZeroCostReward:
    """The share of kept units: costs nothing, so a search's time is the loop and its orchestration."""

    def __call__(self, selection) -> RewardSample:
        kept = sum(len(units) for units in selection.keep_units.values())
        return RewardSample(kept / 1e6, False, 0.0)


class Clock:
    """Timestamps of the episodes' progress events."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.notices: list[str] = []

    def __call__(self, event) -> None:
        if isinstance(event, EpisodeProgress):
            self.times.append(time.perf_counter())
        elif isinstance(event, WorkerNotice):
            self.notices.append(event.message)

    def per_episode(self, per_round: int) -> float:
        """Seconds per episode from the end of the first round to the end of the last."""
        return (self.times[-1] - self.times[per_round - 1]) / (len(self.times) - per_round)


def overhead(analysis, episodes: int, worker_counts: list[int]) -> list[dict]:
    rows = []
    for workers in [0, *worker_counts]:  # 0: in this process, without Ray
        config = SearchConfig(
            policy="random", n_episodes=episodes, workers=max(workers, 1), ray_address="local" if workers else None
        )
        clock = Clock()
        started = time.perf_counter()
        run_search(analysis, ZeroCostReward(), config, progress=clock)
        total = time.perf_counter() - started
        per_round = max(workers, 1)
        rows.append(
            {
                "workers": workers or "in-process",
                "episodes": episodes,
                "seconds_per_episode": clock.per_episode(per_round),
                "first_round_seconds": clock.times[per_round - 1] - started,
                "total_seconds": total,
                "notices": clock.notices,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["seconds_per_episode"]
    for row in rows:
        row["overhead_ms_per_episode"] = 1000 * (row["seconds_per_episode"] - base)
    return rows


def short_search(model, data: Path, episodes: int, reward_size: int, worker_counts: list[int]) -> list[dict]:
    spec = spec_from_model(model)
    reward_set = load_splits(data, spec, reward_size=reward_size, seed=0).reward
    analysis = analyze_model(model)
    rows = []
    for workers in worker_counts:
        config = SearchConfig(policy="agmc", n_episodes=episodes, workers=workers)
        started = time.perf_counter()
        result = search_model(analysis, reward_set, config, spec=spec, reward=RewardConfig())
        wall = time.perf_counter() - started
        rows.append(
            {
                "workers": workers,
                "episodes_per_round": config.episodes_per_round,
                "episodes": episodes,
                "wall_seconds": wall,
                "evaluations": result.n_evaluations,
                "best_reward_top1": result.best_reward,
                "mean_eval_seconds": sum(r.eval_seconds for r in result.records if not r.cached)
                / max(1, result.n_evaluations),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    for row in rows:
        row["speedup_vs_1_worker"] = rows[0]["wall_seconds"] / row["wall_seconds"]
    return rows


def markdown(results: dict) -> str:
    lines = [
        "# Search on Ray workers: orchestration overhead and wall time",
        "",
        f"Machine: {results['machine']}; load average at start {results['load_at_start']}, at end "
        f"{results['load_at_end']} (other work shared the cores). Ray {results['ray']}. Command: "
        f"`{results['command']}`.",
        "",
        f"Ray local runtime start-up: {results['ray_start_seconds']:.1f} s (once per search when the CLI starts it).",
        "",
        f"## Orchestration overhead (zero-cost reward, ResNet-56, random policy, {results['overhead_episodes']} "
        "episodes per setting)",
        "",
        "| workers (= episodes per round) | s / episode | overhead vs in-process (ms / episode) | first round (s) |",
        "|---|---|---|---|",
    ]
    for row in results["overhead"]:
        lines.append(
            f"| {row['workers']} | {row['seconds_per_episode']:.4f} | {row['overhead_ms_per_episode']:+.1f} | "
            f"{row['first_round_seconds']:.1f} |"
        )
    search = results["search"]
    lines += [
        "",
        f"## ResNet-56, agmc, {search[0]['episodes']} episodes (scaled down from 40 to fit this machine), reward "
        f"on {results['reward_size']} held-out train images after BN re-estimation",
        "",
        "| workers | episodes per round | wall (s) | speed-up vs 1 worker | evaluations | mean s / evaluation | "
        "best reward |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in search:
        lines.append(
            f"| {row['workers']} | {row['episodes_per_round']} | {row['wall_seconds']:.1f} | "
            f"{row['speedup_vs_1_worker']:.2f}× | {row['evaluations']} | {row['mean_eval_seconds']:.2f} | "
            f"{100 * row['best_reward_top1']:.1f} % |"
        )
    lines += [
        "",
        "1 worker runs in this process without Ray; 2 workers are Ray actors, each holding the model and the "
        "reward set from one object-store copy. With K = 2 the agent proposes two episodes before it learns "
        "from them, so the two searches follow different trajectories; their best rewards are not a "
        "quality comparison.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", default="cifar10_resnet56")
    parser.add_argument("--overhead-episodes", type=int, default=48)
    parser.add_argument("--overhead-workers", default="1,2,4,8")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--reward-size", type=int, default=1000)
    parser.add_argument("--search-workers", default="1,2")
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks/results/search_scale"))
    args = parser.parse_args()
    # The raylet waits for its metrics agent (a Python process) 30 s by default; a loaded machine needs longer.
    os.environ.setdefault("RAY_agent_register_timeout_ms", "180000")
    import ray

    torch.set_num_threads(1)
    model = load_model(SHARED_MODELS / f"{args.model}.onnx")
    load_at_start = os.getloadavg()
    started = time.perf_counter()
    # One local runtime for every setting: the CLI starts one per search; its cost is reported once.
    for attempt in range(3):  # Ray gives its raylet 30 s to register, which a loaded machine can exceed
        try:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            break
        except Exception as exc:  # Ray raises a plain Exception for that time-out
            print(f"Ray start-up failed ({str(exc).splitlines()[0]}), attempt {attempt + 1} of 3", flush=True)
            ray.shutdown()
    else:
        raise SystemExit("Ray did not start on this machine")
    ray_start = time.perf_counter() - started
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "ray": ray.__version__,
        "command": "python benchmarks/search_scale.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "output"
        ),
        "load_at_start": [round(x, 1) for x in load_at_start],
        "ray_start_seconds": ray_start,
        "overhead_episodes": args.overhead_episodes,
        "reward_size": args.reward_size,
    }
    workers = [int(w) for w in args.overhead_workers.split(",")]
    results["overhead"] = overhead(analyze_model(model), args.overhead_episodes, workers)
    search_workers = [int(w) for w in args.search_workers.split(",")]
    results["search"] = short_search(model, args.data, args.episodes, args.reward_size, search_workers)
    results["load_at_end"] = [round(x, 1) for x in os.getloadavg()]
    ray.shutdown()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(args.output.with_suffix(".json"), json.dumps(results, indent=2).encode())
    write_bytes_atomic(args.output.with_suffix(".md"), markdown(results).encode())
    print(markdown(results))


if __name__ == "__main__":
    main()
