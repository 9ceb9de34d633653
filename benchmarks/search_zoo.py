"""Benchmark the search policies on the shared zoo at one MACs budget, with equal evaluation budgets.

    python benchmarks/search_zoo.py --data ../shared/data/cifar10 --episodes 100 -o benchmarks/results/search

For each model: measure one reward evaluation, then run agmc, amc, random (``--episodes`` evaluations
each) and uniform (one evaluation), every one with the reward = top-1 on 1,000 held-out TRAIN images
after BatchNormalization re-estimation. Each policy's best plan is then scored on the full 10k test set
(no fine-tuning), with and without re-estimated statistics. Runs resume from their run directories.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from agmc_onnx.analysis import analyze_model
from agmc_onnx.cost import create_session
from agmc_onnx.data import load_splits, spec_from_model
from agmc_onnx.evaluate import evaluate_accuracy
from agmc_onnx.io import load_model
from agmc_onnx.plan import uniform_plan
from agmc_onnx.prune import apply_selection
from agmc_onnx.search import AccuracyReward, DDPGConfig, RewardConfig, SearchConfig, search_model

SHARED_MODELS = Path(__file__).resolve().parents[1] / ".." / "shared" / "models"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def eval_cost(analysis, reward: AccuracyReward) -> dict:
    """Seconds of one uncached reward evaluation (prune + BN re-estimation + 1,000 images), median of 3."""
    times = []
    for keep_ratio in (0.6, 0.7, 0.8):
        selection = reward.selection_of(uniform_plan(analysis.groups, keep_ratio, 8))
        started = time.perf_counter()
        apply_selection(analysis, selection)
        prune_s = time.perf_counter() - started
        sample = reward(selection)
        times.append((sample.seconds, prune_s))
    reward.cache.clear()
    times.sort()
    return {"eval_seconds": times[1][0], "prune_seconds": times[1][1]}


def test_scores(result, test, spec, with_plain: bool) -> dict:
    reward, plan = result.reward, result.plan
    selection = reward.selection_of(plan)
    plain, _ = apply_selection(reward.analysis, selection)
    # Scored with re-estimated statistics even when the search's reward went without them.
    recalibrating = AccuracyReward(reward.analysis, reward.dataset, spec, RewardConfig(recalibrate_bn=True))
    recal = recalibrating.pruned_model(selection)
    profile = reward.config.profile()
    scores = {"test_top1_bn_recalibrated": evaluate_accuracy(create_session(recal, profile), test, spec).top1}
    if with_plain:  # each 10k evaluation costs about a minute on this machine: only where it informs
        scores["test_top1_plain"] = evaluate_accuracy(create_session(plain, profile), test, spec).top1
    return scores


def search_policy(name: str, policy: str, analysis, splits, spec, args: argparse.Namespace, out: Path):
    """One policy's search (resumed from its run directory), its plan and encoder loss written beside it."""
    config = SearchConfig(
        policy=policy,
        n_episodes=args.episodes,
        flops_keep_ratio=args.flops,
        seed=args.seed,
        ddpg=DDPGConfig(warmup_episodes=args.warmup),
        action_center=args.action_center,
    )
    run_dir = out / "runs" / f"{name}_{policy}{args.tag}"

    def progress(event):
        record, total = event.record, event.total
        if record.episode % 10 == 0 or record.episode == total - 1:
            log(
                f"{name} {policy} ep {record.episode + 1}/{total} reward {record.reward:.3f} "
                f"best {record.best_reward:.3f} macs {record.macs_kept_fraction:.3f}"
            )

    result = search_model(
        analysis,
        splits.reward,
        config,
        spec=spec,
        reward=RewardConfig(recalibrate_bn=not args.no_recal),
        run_dir=run_dir,
        resume=True,
        progress=progress,
    )
    (run_dir / "plan.json").write_text(result.plan.to_json())
    if result.encoder_loss:
        (run_dir / "encoder_pretrain_loss.json").write_text(json.dumps(result.encoder_loss))
    return result


def run_model(name: str, args: argparse.Namespace, out: Path) -> list[dict]:
    model = load_model(SHARED_MODELS / f"cifar10_{name}.onnx")
    spec = spec_from_model(model)
    splits = load_splits(args.data, spec, reward_size=args.reward_size, seed=0)
    analysis = analyze_model(model)
    rows = []
    reward = AccuracyReward(analysis, splits.reward, spec, RewardConfig(recalibrate_bn=not args.no_recal))
    cost = eval_cost(analysis, reward)
    log(f"{name}: one evaluation {cost['eval_seconds']:.2f} s (prune {cost['prune_seconds']:.2f} s)")
    # Measured once by the zoo (onnxruntime, full test set); re-measuring costs a minute here.
    original_test = json.loads((SHARED_MODELS / f"cifar10_{name}.json").read_text())["test_acc_onnxruntime"]
    for policy in args.policies:
        result = search_policy(name, policy, analysis, splits, spec, args, out)
        scores = test_scores(result, splits.test, spec, with_plain=policy in ("uniform", "agmc") or args.no_recal)
        row = {
            "model": name,
            "policy": policy,
            "episodes": len(result.records),
            "evaluations": result.n_evaluations,
            "best_episode": result.best_episode,
            "reward_top1": result.best_reward,
            "macs_kept_fraction": result.records[result.best_episode].macs_kept_fraction,
            "search_seconds": sum(r.episode_seconds for r in result.records),
            "original_test_top1": original_test,
            **scores,
            "budget_met_every_episode": all(
                r.macs_kept_fraction <= args.flops + 1e-9 for r in result.records
            ),
        }
        log(json.dumps(row))
        rows.append(row)
    return rows, cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cifar10"))
    parser.add_argument("--models", nargs="+", default=["resnet56", "mobilenetv2"])
    parser.add_argument("--policies", nargs="+", default=["uniform", "agmc", "amc", "random"])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=15, help="random warm-up episodes of agmc/amc")
    parser.add_argument("--action-center", choices=["none", "uniform"], default="none")
    parser.add_argument("--flops", type=float, default=0.5)
    parser.add_argument("--reward-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-recal", action="store_true", help="reward without BatchNormalization re-estimation"
    )
    parser.add_argument("--tag", default="", help="suffix of run directories and the results file")
    parser.add_argument("-o", "--out", type=Path, default=Path("benchmarks/results/search"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # the agent's small networks: one thread avoids contention with onnxruntime
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    all_rows, costs = [], {}
    for name in args.models:
        rows, costs[name] = run_model(name, args, args.out)
        all_rows += rows
        payload = {
            "settings": {k: str(v) for k, v in vars(args).items()},
            "eval_cost": costs,
            "results": all_rows,
            "wall_seconds": time.perf_counter() - started,
        }
        (args.out / f"results{args.tag}.json").write_text(json.dumps(payload, indent=2))
    log(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
