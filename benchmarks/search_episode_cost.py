"""Where one search episode's reward evaluation spends its time, against the inference it cannot avoid.

    /work/timed.sh python benchmarks/search_episode_cost.py --data ../shared/data/cifar10

For each model and three uniformly pruned plans (keep 0.6 / 0.7 / 0.8, round to 8), one uncached reward
evaluation (300 reward images, BatchNormalization re-estimated on 2 × 128 of them) is split into its
stages: pruning, re-estimation (calibration session + its runs), scoring session, scoring. Measured in
the same run, the floors: plain inference of the same 256 calibration images and 300 reward images on the
pruned model. Two candidate cuts are checked for exactness and speed: the calibration session without
onnxruntime's NCHWc layout (``extended`` optimisation: no reorders around training-mode BatchNormalization)
and scoring in one batch of 300 instead of batches of 64. A cut is only worth taking if it is bit-identical.
One thread everywhere (the timed job owns one core). Medians of the three plans.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from agmc_onnx.analysis import analyze_model
from agmc_onnx.cost import create_session
from agmc_onnx.data import load_splits, spec_from_model, to_model_input
from agmc_onnx.importance import channel_scores
from agmc_onnx.io import load_model
from agmc_onnx.passes.reestimate_batchnorm import _calibration_copy
from agmc_onnx.plan import uniform_plan
from agmc_onnx.prune import apply_selection
from agmc_onnx.search import AccuracyReward, DDPGConfig, RewardConfig
from agmc_onnx.search.budget import macs_wall
from agmc_onnx.search.env import PruningEnv
from agmc_onnx.search.features import search_order
from agmc_onnx.search.policies import make_policy

SHARED_MODELS = Path(__file__).resolve().parents[1] / ".." / "shared" / "models"


def timed(function):
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


def logits(session, batches) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: b})[0] for b in batches])


def calibration_runs(calibration, outputs, profile, batches):
    session = create_session(calibration, profile)
    name = session.get_inputs()[0].name
    return [session.run(outputs, {name: b}) for b in batches]


def one_plan(analysis, reward: AccuracyReward, images: np.ndarray, keep: float) -> dict:
    profile = reward.config.profile()
    selection = reward.selection_of(uniform_plan(analysis.groups, keep, 8))
    (pruned, _), prune_s = timed(lambda: apply_selection(analysis, selection))
    recalibrated, recal_s = timed(lambda: reward.recalibrated(pruned))
    session, session_s = timed(lambda: create_session(recalibrated, profile))
    score, score_s = timed(lambda: reward.score(session))
    calibration, outputs = _calibration_copy(pruned)
    batches = reward._calibration
    stats, calib_all_s = timed(lambda: calibration_runs(calibration, outputs, profile, batches))
    extended = dataclasses.replace(profile, graph_optimization="extended")
    stats_ext, calib_ext_s = timed(lambda: calibration_runs(calibration, outputs, extended, batches))
    plain = create_session(pruned, profile)
    _, infer_calib_s = timed(lambda: logits(plain, batches))
    by_64 = [images[i : i + 64] for i in range(0, len(images), 64)]
    out_64, infer_reward_s = timed(lambda: logits(session, by_64))
    out_300, infer_one_batch_s = timed(lambda: logits(session, [images]))
    return {
        "keep": keep,
        "reward": score,
        "prune_s": prune_s,
        "bn_reestimation_s": recal_s,
        "scoring_session_s": session_s,
        "scoring_s": score_s,
        "reward_total_s": prune_s + recal_s + session_s + score_s,
        "floor_inference_256_calibration_s": infer_calib_s,
        "floor_inference_300_reward_s": infer_reward_s,
        "calibration_runs_all_s": calib_all_s,
        "calibration_runs_extended_s": calib_ext_s,
        "calibration_extended_bit_identical": all(
            np.array_equal(a, b) for x, y in zip(stats, stats_ext) for a, b in zip(x, y)
        ),
        "scoring_one_batch_300_s": infer_one_batch_s,
        "scoring_one_batch_bit_identical": bool(np.array_equal(out_64, out_300)),
    }


def agent_seconds(analysis, policy_name: str) -> float:
    """Seconds of one episode's agent updates (one per step, after 3 warm-up episodes; rewards made up)."""
    groups = search_order(analysis)
    wall = macs_wall(analysis, groups, 0.5, 0.2, 8)
    env = PruningEnv(groups, wall, "l1", None, None, analysis.depth, scores=channel_scores(analysis, "l1"))
    policy = make_policy(policy_name, analysis, groups, env, 0, DDPGConfig(warmup_episodes=3))
    seconds = 0.0
    for episode in range(5):
        env.reset()
        policy.begin_episode(episode)
        transitions = []
        for step in range(env.n_steps):
            dynamic = env.dynamic()
            transitions.append((step, dynamic, env.step(policy.act(step, dynamic, episode))))
        _, seconds = timed(lambda: policy.observe(episode, transitions, 0.5 + 0.01 * episode))
    return seconds


def run_model(name: str, args: argparse.Namespace) -> dict:
    model = load_model(SHARED_MODELS / f"cifar10_{name}.onnx")
    spec = spec_from_model(model)
    splits = load_splits(args.data, spec, reward_size=args.reward_size, seed=0)
    analysis = analyze_model(model)
    reward = AccuracyReward(analysis, splits.reward, spec, RewardConfig(threads=1))
    images = to_model_input(splits.reward.images, spec)
    one_plan(analysis, reward, images, 0.9)  # warm-up: first session creation, allocator
    rows = [one_plan(analysis, reward, images, keep) for keep in (0.6, 0.7, 0.8)]
    numeric = [k for k, v in rows[0].items() if isinstance(v, float) and k.endswith("_s")]
    median = {k: float(np.median([r[k] for r in rows])) for k in numeric}
    flags = {k: all(r[k] for r in rows) for k in rows[0] if k.endswith("bit_identical")}
    median |= {f"agent_updates_{p}_s": agent_seconds(analysis, p) for p in ("agmc", "amc")}
    return {"median": median, "exact": flags, "plans": rows}


def table(results: dict) -> str:
    lines = [
        "| model | reward total s | prune | BN re-estimation | scoring session | scoring | floor: inference of "
        "256 + 300 images | agent updates per episode, agmc / amc | re-estimation / inference of its 256 images "
        "| calibration w/o NCHWc (exact?) "
        "| scoring in 1 batch (exact?) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        m, e = r["median"], r["exact"]
        floor = m["floor_inference_256_calibration_s"] + m["floor_inference_300_reward_s"]
        lines.append(
            f"| {name} | {m['reward_total_s']:.2f} | {m['prune_s']:.2f} | {m['bn_reestimation_s']:.2f} "
            f"| {m['scoring_session_s']:.2f} | {m['scoring_s']:.2f} | {floor:.2f} "
            f"| {m['agent_updates_agmc_s']:.2f} / {m['agent_updates_amc_s']:.2f} "
            f"| {m['bn_reestimation_s'] / m['floor_inference_256_calibration_s']:.2f}× "
            f"| {m['calibration_runs_extended_s']:.2f} vs {m['calibration_runs_all_s']:.2f} s "
            f"({'yes' if e['calibration_extended_bit_identical'] else 'no'}) "
            f"| {m['scoring_one_batch_300_s']:.2f} vs {m['floor_inference_300_reward_s']:.2f} s "
            f"({'yes' if e['scoring_one_batch_bit_identical'] else 'no'}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cifar10"))
    parser.add_argument("--models", nargs="+", default=["resnet56", "mobilenetv2"])
    parser.add_argument("--reward-size", type=int, default=300)
    parser.add_argument("-o", "--out", type=Path, default=Path("benchmarks/results/search_episode_cost"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    results = {name: run_model(name, args) for name in args.models}
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    args.out.with_suffix(".md").write_text(table(results) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
