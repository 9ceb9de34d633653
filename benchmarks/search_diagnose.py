"""What a DDPG search's agent has learned, read from its checkpoint: no reward evaluation is spent.

    python benchmarks/search_diagnose.py benchmarks/results/search_efficiency/runs/mobilenetv2_agmc_s0 ...

For each run directory (a ``search_efficiency.py`` run: model, policy and seed from its name and config),
the policy is rebuilt, its checkpoint loaded, and one greedy episode (no exploration) played through the
action wall. Per step: the actor's action, the effective action after the wall, and the critic's Q at
actions 0, 0.5 and 1. Summaries: the share of steps where the actor is saturated (< 0.05 or > 0.95), the
share where the critic is monotone in the action (then an end of the range maximises it, whatever the
layer), and the share where rounding to ``round_to`` or the wall moved the action by more than 0.05.
With ``--random`` run directories: per group, the correlation between its effective action and the
episode's reward over those random episodes (the data a critic sees in its warm-up), when every step of
an episode is credited with the same reward. Written to ``diagnosis.json`` / ``diagnosis.md`` at ``-o``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from search_report import read_log

from agmc_onnx.analysis import analyze_model
from agmc_onnx.importance import channel_scores
from agmc_onnx.io import load_model
from agmc_onnx.search import DDPGConfig
from agmc_onnx.search.budget import macs_wall, uniform_keep_ratio
from agmc_onnx.search.env import PruningEnv
from agmc_onnx.search.features import search_order
from agmc_onnx.search.policies import make_policy

SHARED_MODELS = Path(__file__).resolve().parents[1] / ".." / "shared" / "models"
GRID = (0.0, 0.5, 1.0)


def rebuild(run_dir: Path):
    """The run's environment and policy, the policy restored from the run's checkpoint."""
    config = json.loads((run_dir / "config.json").read_text())
    model_name = run_dir.name.split("_")[0]
    analysis = analyze_model(load_model(SHARED_MODELS / f"cifar10_{model_name}.onnx"))
    groups = search_order(analysis)
    wall = macs_wall(analysis, groups, config["flops_keep_ratio"], config["lower_bound"], config["round_to"])
    center = uniform_keep_ratio(wall)[0] if config["action_center"] == "uniform" else None
    scores = channel_scores(analysis, config["importance"])
    relative = config["action_center"] == "budget-relative"
    env = PruningEnv(
        groups, wall, config["importance"], center, None, analysis.depth, scores=scores, budget_relative=relative
    )
    ddpg = DDPGConfig(**config["ddpg"])
    policy = make_policy(config["policy"], analysis, groups, env, config["seed"], ddpg)
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    policy.load_state_dict(checkpoint["policy"])
    return env, policy, len(checkpoint["progress"].records)


@torch.no_grad()
def greedy_episode(env: PruningEnv, policy) -> list[dict]:
    agent = policy.agent
    env.reset()
    table = agent.static_table()
    steps = []
    for step in range(env.n_steps):
        dynamic = env.dynamic()
        state = torch.cat([table[step], torch.as_tensor(dynamic, dtype=torch.float32)]).unsqueeze(0)
        mean = float(agent.actor(state)[0, 0])
        q = [float(agent.critic(torch.cat([state, torch.tensor([[a]])], dim=1))[0, 0]) for a in GRID]
        effective = env.step(mean)
        steps.append({"actor": mean, "effective": effective, "q": q})
    return steps


def summary(steps: list[dict]) -> dict:
    q = np.array([s["q"] for s in steps])
    monotone = np.all(np.diff(q, axis=1) > 0, axis=1) | np.all(np.diff(q, axis=1) < 0, axis=1)
    return {
        "saturated_share": float(np.mean([s["actor"] < 0.05 or s["actor"] > 0.95 for s in steps])),
        "critic_monotone_share": float(monotone.mean()),
        "wall_overrides_share": float(np.mean([abs(s["effective"] - s["actor"]) > 0.05 for s in steps])),
    }


def action_reward_correlation(runs: list[Path]) -> dict:
    records = [r for run in runs for r in read_log(run)]
    actions = np.array([r["actions"] for r in records])
    rewards = np.array([r["reward"] for r in records])
    correlation = [float(np.corrcoef(actions[:, i], rewards)[0, 1]) for i in range(actions.shape[1])]
    return {
        "episodes": len(records),
        "per_group": correlation,
        "positive_share": float(np.mean(np.array(correlation) > 0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--random", nargs="*", type=Path, default=[], help="random-policy run directories")
    parser.add_argument("-o", "--out", type=Path, default=Path("benchmarks/results/search_efficiency/diagnosis"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for run_dir in args.runs:
        env, policy, episodes = rebuild(run_dir)
        steps = greedy_episode(env, policy)
        results[run_dir.name] = {"episodes": episodes, **summary(steps), "steps": steps}
    lines = [
        "| run | episodes learned from | actor saturated | critic monotone in the action "
        "| rounding or wall moved the action "
        "| greedy actions (actor → effective) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        actions = " ".join(f"{s['actor']:.2f}→{s['effective']:.2f}" for s in r["steps"])
        lines.append(
            f"| {name} | {r['episodes']} | {100 * r['saturated_share']:.0f} % "
            f"| {100 * r['critic_monotone_share']:.0f} % | {100 * r['wall_overrides_share']:.0f} % | {actions} |"
        )
    if args.random:
        correlation = action_reward_correlation(args.random)
        results["random_action_reward_correlation"] = correlation
        lines += [
            "",
            f"Random episodes ({correlation['episodes']}): correlation of each group's effective action with "
            f"the episode's reward, in search order ({100 * correlation['positive_share']:.0f} % positive):",
            "",
            " ".join(f"{c:+.2f}" for c in correlation["per_group"]),
        ]
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
