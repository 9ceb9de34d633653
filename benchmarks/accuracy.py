"""Accuracy without long fine-tuning: importance criteria × BN re-estimation vs least-squares reconstruction.

    python benchmarks/accuracy.py grid [--models resnet20,resnet56,mobilenetv2] [--test-images 2000]
    python benchmarks/accuracy.py finetune --models resnet56 [--epochs 1] [--train-images 0]
    python benchmarks/accuracy.py render

``grid``: for every model, the uniform plan at 50 % MACs and the committed searched policy
(``benchmarks/results/compress/<model>/report.json``), each channel-importance criterion, then test top-1
after BatchNormalization re-estimation only and after reconstruction (which re-estimates BN too), with the
wall time of each step. ``finetune``: one epoch from the best reconstructed point of the grid. Results
accumulate in ``benchmarks/results/accuracy.json`` (a rerun skips what is there); ``render`` writes
``accuracy.md``. Run heavy phases under ``flock /tmp/agmc-heavy.lock``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from measure_zoo import machine  # benchmarks/ is on sys.path when run as a script

from agmc_onnx.analysis import analyze_model
from agmc_onnx.cost.session import create_session
from agmc_onnx.data import load_split, sample_subset, spec_from_model
from agmc_onnx.evaluate import evaluate_accuracy
from agmc_onnx.importance import build_importance
from agmc_onnx.io import load_model
from agmc_onnx.passes.base import run_passes
from agmc_onnx.passes.reestimate_batchnorm import ReestimateBatchNormPass
from agmc_onnx.plan import PruningPlan, uniform_plan
from agmc_onnx.prune import prune_model
from agmc_onnx.reconstruct.run import ReconstructConfig, reconstruct_pruned
from agmc_onnx.search.recalibrate import calibration_batches

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "benchmarks" / "results"
IMPORTANCES = ("l1", "l2", "random", "taylor", "reconstruction")
BUDGET = 0.5
ROUND_TO = 8


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def model_path(name: str) -> Path:
    shared = SHARED / "models" / f"cifar10_{name}.onnx"
    return shared if shared.exists() else ROOT / "models" / "zoo" / f"cifar10_{name}.onnx"


def uniform_at_budget(model, analysis) -> PruningPlan:
    """The largest single keep ratio (round_to 8) whose pruned model keeps at most 50 % of the MACs."""
    low, high = 0.2, 1.0
    for _ in range(14):
        middle = (low + high) / 2
        result = prune_model(model, uniform_plan(analysis.groups, middle, ROUND_TO), analysis=analysis)
        low, high = (middle, high) if result.after.macs <= BUDGET * result.before.macs else (low, middle)
    return uniform_plan(analysis.groups, low, ROUND_TO)


def searched_plan(name: str) -> PruningPlan | None:
    report = RESULTS / "compress" / name / "report.json"
    if not report.exists():
        return None
    ratios = json.loads(report.read_text())["keep_ratios"]
    return PruningPlan(ratios, round_to=ROUND_TO)


class Store:
    """Results by key in one JSON file, written after every row so an interrupted run resumes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = json.loads(path.read_text()) if path.exists() else {}

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def put(self, key: str, row: dict) -> None:
        self.rows[key] = row
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.rows, indent=1))
        os.replace(tmp, self.path)


def run_grid(args, store: Store) -> None:
    data = SHARED / "data" / "cifar10"
    for name in args.models.split(","):
        model = load_model(model_path(name))
        spec = spec_from_model(model)
        train = load_split(data, "train", spec)
        test = sample_subset(load_split(data, "test", spec), args.test_images, seed=0)
        analysis = analyze_model(model)
        rows, batches = calibration_batches(train, spec, 256, 64)
        labels = [train.labels[r] for r in rows]
        plans = {"uniform": uniform_at_budget(model, analysis), "searched": searched_plan(name)}
        original_key = f"{name}/original"
        if original_key not in store:
            store.put(original_key, {"test_top1": top1(model, test, spec)})
        for plan_name, plan in plans.items():
            if plan is None:
                log(f"{name}: no committed searched policy; skipping")
                continue
            for importance_name in args.importances.split(","):
                key = f"{name}/{plan_name}/{importance_name}"
                if key in store:
                    continue
                log(f"{key}")
                store.put(key, grid_row(model, analysis, plan, importance_name, batches, labels, train, test, spec))
                log(f"{key}: {store.rows[key]}")


def grid_row(model, analysis, plan, importance_name, batches, labels, train, test, spec) -> dict:
    started = time.perf_counter()
    importance = build_importance(importance_name, batches[:2], labels[:2])
    result = prune_model(model, plan, analysis=analysis, importance=importance)
    prune_s = time.perf_counter() - started
    started = time.perf_counter()
    reestimate = ReestimateBatchNormPass(calibration_batches(train, spec, 256)[1])
    bn_only = run_passes(result.model, [reestimate])
    bn_s = time.perf_counter() - started
    reconstructed = reconstruct_pruned(analysis, result.selection, result.model, train, spec, ReconstructConfig())
    with_bn = run_passes(reconstructed.model, [reestimate])
    return {
        "macs_fraction": result.after.macs / result.before.macs,
        "select_and_prune_s": prune_s,
        "bn_only_s": bn_s,
        "reconstruct_s": reconstructed.seconds,
        "reconstruct_images": reconstructed.n_images,
        "layers_refitted": reconstructed.layers_refitted,
        "top1_bn_only": top1(bn_only, test, spec),
        "top1_reconstructed": top1(reconstructed.model, test, spec),
        "top1_reconstructed_bn": top1(with_bn, test, spec),
    }


def top1(model, dataset, spec) -> float:
    return evaluate_accuracy(create_session(model), dataset, spec, batch_size=250).top1


def run_finetune(args, store: Store) -> None:
    from agmc_onnx.finetune import FinetuneConfig, Normalization, finetune

    data = SHARED / "data" / "cifar10"
    for name in args.models.split(","):
        best_key = max(
            (k for k in store.rows if k.startswith(f"{name}/") and "top1_reconstructed" in store.rows[k]),
            key=lambda k: store.rows[k]["top1_reconstructed"],
        )
        _, plan_name, importance_name = best_key.split("/")
        for variant, distill in (("kd", True), ("plain", False)):
            key = f"{name}/finetune/{variant}"
            if key in store or variant not in args.variants.split(","):
                continue
            model = load_model(model_path(name))
            spec = spec_from_model(model)
            train = load_split(data, "train", spec)
            test = load_split(data, "test", spec)
            analysis = analyze_model(model)
            rows, batches = calibration_batches(train, spec, 256, 64)
            plan = uniform_at_budget(model, analysis) if plan_name == "uniform" else searched_plan(name)
            importance = build_importance(importance_name, batches[:2], [train.labels[r] for r in rows[:2]])
            result = prune_model(model, plan, analysis=analysis, importance=importance)
            start = reconstruct_pruned(analysis, result.selection, result.model, train, spec).model
            before = top1(start, test, spec)
            images, labels = train.images, train.labels
            if args.train_images:
                subset = sample_subset(train, args.train_images, seed=0)
                images, labels = subset.images, subset.labels
            config = FinetuneConfig(epochs=args.epochs, lr=args.lr, distill_weight=args.kd_weight, device="cpu")
            norm = Normalization(tuple(spec.mean), tuple(spec.std), spec.scale)
            log(f"{key}: fine-tuning from {best_key} ({before:.4f}) on {len(labels)} images")
            started = time.perf_counter()
            tuned = finetune(start, images, labels, norm, config, teacher=model if distill else None)
            seconds = time.perf_counter() - started
            store.put(key, {
                "start": best_key, "top1_before": before, "top1_after": top1(tuned.model, test, spec),
                "train_images": int(len(labels)), "epochs": args.epochs, "lr": args.lr,
                "distill_weight": args.kd_weight if distill else 0.0, "seconds": seconds,
            })
            log(f"{key}: {store.rows[key]}")


def render(store: Store, test_images: int, conditions: str) -> str:
    rows = store.rows
    lines = [
        "# Accuracy at 50 % MACs without fine-tuning: importance × BN re-estimation vs reconstruction",
        "",
        "Command: `python benchmarks/accuracy.py grid` then `finetune` (see the script's docstring). "
        f"Machine: {machine()['cpu_model']}, {os.cpu_count()} cores; {conditions} "
        f"Python {platform.python_version()}, torch {torch.__version__}.",
        "",
        "Protocol: shared CIFAR-10 models; 50 % MACs, channel counts rounded to multiples of 8. *uniform*: "
        "the largest single keep ratio within the budget; *searched*: the agmc policy committed in "
        "`benchmarks/results/compress/<model>/report.json` (searched with a BN-re-estimation reward). "
        "Calibration: class-balanced training images (256 for BN re-estimation; reconstruction uses 256 or "
        "twice the images its largest layer needs, 16 sampled positions per image and layer; its BN "
        "statistics stay the original's unless the column says + BN). "
        "taylor: gradients of the cross-entropy on 128 training images; reconstruction (importance): greedy "
        "removal order on 128 images, 2 positions per image and layer. "
        f"Grid accuracy: top-1 on a seeded class-balanced {test_images:,}-image subset of the test set (JPEG copy); "
        "fine-tuning rows: the full 10,000-image test set.",
        "",
        "| model | plan | importance | MACs | BN only | reconstruction | reconstruction + BN | select+prune s "
        "| BN s | reconstruct s (images) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, row in rows.items():
        parts = key.split("/")
        if len(parts) != 3 or parts[1] == "finetune":
            continue
        name, plan, importance = parts
        lines.append(
            f"| {name} | {plan} | {importance} | {row['macs_fraction']:.1%} | {row['top1_bn_only']:.2%} | "
            f"**{row['top1_reconstructed']:.2%}** | {row['top1_reconstructed_bn']:.2%} | "
            f"{row['select_and_prune_s']:.1f} | {row['bn_only_s']:.1f} | "
            f"{row['reconstruct_s']:.1f} ({row['reconstruct_images']}) |"
        )
    originals = ", ".join(f"{k.split('/')[0]} {v['test_top1']:.2%}" for k, v in rows.items() if k.endswith("/original"))
    lines += ["", f"Unpruned, same test subset: {originals}.", ""]
    tuned = {k: v for k, v in rows.items() if "/finetune/" in k}
    if tuned:
        lines += [
            "## One epoch of fine-tuning from the best point",
            "",
            "| model | start | loss | train images | lr | before | after 1 epoch | s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key, row in tuned.items():
            loss = f"CE + KD {row['distill_weight']}" if row["distill_weight"] else "CE"
            lines.append(
                f"| {key.split('/')[0]} | {row['start']} | {loss} | {row['train_images']} | {row['lr']} | "
                f"{row['top1_before']:.2%} | **{row['top1_after']:.2%}** | {row['seconds']:.0f} |"
            )
        lines += ["", "Peer bar for the same single CPU epoch at 50 % MACs (Torch-Pruning global L1, plain SGD 0.01, "
                  "cosine; measured earlier on the 2-core Xeon, full test set): ResNet-56 86.10 %, ResNet-20 82.48 %. "
                  "The goal is ≥ 88 % for ResNet-56."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=("grid", "finetune", "render"))
    parser.add_argument("--models", default="resnet20,resnet56,mobilenetv2")
    parser.add_argument("--importances", default=",".join(IMPORTANCES))
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--conditions", default="", help="What else ran on the machine (stated in the output).")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--kd-weight", type=float, default=0.5)
    parser.add_argument("--variants", default="kd,plain")
    parser.add_argument("--train-images", type=int, default=0, help="0: the whole training split")
    parser.add_argument("--results", type=Path, default=RESULTS / "accuracy.json")
    args = parser.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # the cores this process may use
    store = Store(args.results)
    if args.phase == "grid":
        run_grid(args, store)
    elif args.phase == "finetune":
        run_finetune(args, store)
    args.results.with_suffix(".md").write_text(render(store, args.test_images, args.conditions))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
