"""Recovery of the shared ResNet-56 pruned uniformly to ~50 % MACs: test accuracy before fine-tuning and
after 1, 2 and 4 epochs (each its own cosine run), with and without distillation from the unpruned model.

    python benchmarks/finetune_resnet56.py [--data ../shared/data/cifar10] [--epochs 1,2,4]
        [--train-images N] [--budget-min 40] [--out benchmarks/results/finetune_resnet56.md]

Without ``--train-images`` the script times a few training steps, estimates the whole benchmark, and uses
a fixed, class-balanced 10,000-image subset of the fine-tuning set when the estimate exceeds the budget.
Accuracy is top-1 on the full 10k CIFAR-10 (JPEG copy) test set through onnxruntime.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from agmc_onnx.analysis import analyze_model
from agmc_onnx.data import load_split, sample_subset, spec_from_model
from agmc_onnx.evaluate import evaluate_accuracy
from agmc_onnx.finetune import FinetuneConfig, Normalization, finetune
from agmc_onnx.finetune.augment import normalize
from agmc_onnx.finetune.losses import training_loss
from agmc_onnx.io import load_model
from agmc_onnx.plan import uniform_plan
from agmc_onnx.prune import prune_model
from agmc_onnx.torch_exec import OnnxModule

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SUBSET_IMAGES = 10_000
BATCH_SIZE = 128


def prune_to_half_macs(model, target_mac_ratio: float = 0.5):
    """Bisect the uniform keep ratio until the pruned MACs are just below ``target_mac_ratio`` of the
    original's."""
    analysis = analyze_model(model)
    low, high, best = 0.3, 1.0, None
    for _ in range(10):
        keep = (low + high) / 2
        result = prune_model(model, uniform_plan(analysis.groups, keep), analysis=analysis)
        ratio = result.after.macs / result.before.macs
        if ratio <= target_mac_ratio:
            low, best = keep, (keep, ratio, result)
        else:
            high = keep
    return best


def seconds_per_step(model, teacher, images, normalization, steps: int = 4) -> float:
    """Median wall time of one training step (forward, backward, SGD) at the benchmark's batch size."""
    module = OnnxModule(model).train()
    teacher_module = OnnxModule(teacher).eval() if teacher is not None else None
    optimizer = torch.optim.SGD(module.parameters(), lr=0.0)
    x = normalize(torch.from_numpy(images[:BATCH_SIZE]).permute(0, 3, 1, 2), normalization)
    y = torch.zeros(len(x), dtype=torch.int64)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        teacher_logits = None
        if teacher_module is not None:
            with torch.no_grad():
                teacher_logits = teacher_module(x)
        loss = training_loss(module(x), y, teacher_logits)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return float(np.median(times[1:]))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "cifar10_resnet56.onnx")
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "cifar10")
    parser.add_argument("--epochs", default="1,2,4")
    parser.add_argument("--train-images", type=int, default=None)
    parser.add_argument("--budget-min", type=float, default=40.0)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "finetune_resnet56.md")
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    epoch_counts = [int(e) for e in args.epochs.split(",")]
    torch.set_num_threads(args.threads)

    original = load_model(args.model)
    spec = spec_from_model(original)
    normalization = Normalization(spec.mean, spec.std, spec.scale)
    train, test = load_split(args.data, "train", spec), load_split(args.data, "test", spec)
    keep_ratio, mac_ratio, pruned = prune_to_half_macs(original)
    before = evaluate_accuracy(pruned.model, test, spec).top1
    original_top1 = evaluate_accuracy(original, test, spec).top1
    print(
        f"keep ratio {keep_ratio:.3f} -> MACs {mac_ratio:.3f} of the original; test top-1 {before:.4f} "
        f"(unpruned {original_top1:.4f})",
        flush=True,
    )

    step_plain = seconds_per_step(pruned.model, None, train.images, normalization)
    step_distill = seconds_per_step(pruned.model, original, train.images, normalization)
    total_epochs = sum(epoch_counts)
    estimate_min = total_epochs * (step_plain + step_distill) * train.n_images / BATCH_SIZE / 60
    n_images = args.train_images or (SUBSET_IMAGES if estimate_min > args.budget_min else train.n_images)
    subset_note = ""
    if n_images < train.n_images:
        reason = "asked for with --train-images" if args.train_images else f"budget {args.budget_min:.0f} min"
        subset_note = (
            f"Fine-tuning used a fixed class-balanced subset of {n_images} of the {train.n_images} training "
            f"images ({reason}): all runs on the full set were estimated at {estimate_min:.0f} min on this "
            f"CPU at the time (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)."
        )
        train = sample_subset(train, n_images, seed=0)
    print(
        f"step {step_plain:.2f} s plain / {step_distill:.2f} s distilled; "
        f"training on {train.n_images} images; "
        f"full-set estimate {estimate_min:.0f} min",
        flush=True,
    )

    rows = _runs(pruned.model, original, train, test, spec, normalization, epoch_counts, args.lr)
    figures = (keep_ratio, mac_ratio, original_top1, before)
    lines = _report(args, figures, subset_note, rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _runs(pruned, original, train, test, spec, normalization, epoch_counts, lr) -> list[tuple]:
    """One fine-tuning run per (distillation, epoch count): its test top-1, time per epoch and best epoch."""
    rows = []
    for distill in (False, True):
        for epochs in epoch_counts:
            config = FinetuneConfig(epochs=epochs, batch_size=BATCH_SIZE, lr=lr, seed=0, device="auto")
            teacher = original if distill else None
            result = finetune(pruned, train.images, train.labels, normalization, config, teacher=teacher)
            top1 = evaluate_accuracy(result.model, test, spec).top1
            per_epoch = float(np.mean([r.seconds for r in result.history[1:]]))
            rows.append((distill, epochs, top1, per_epoch, result.best_epoch, result.best_val_top1))
            print(
                f"distill={distill} epochs={epochs}: test top-1 {top1:.4f}, {per_epoch:.0f} s/epoch, "
                f"best epoch {result.best_epoch}",
                flush=True,
            )
    return rows


def _report(args: argparse.Namespace, figures: tuple, subset_note: str, rows: list[tuple]) -> list[str]:
    keep_ratio, mac_ratio, original_top1, before = figures
    lines = [
        "# Fine-tuning the shared ResNet-56 after uniform pruning to ~50 % MACs",
        "",
        f"Command: `python benchmarks/finetune_resnet56.py --epochs {args.epochs}"
        f"{f' --train-images {args.train_images}' if args.train_images else ''}` on this machine's CPU "
        f"({torch.get_num_threads()} torch threads). Pruning: `agmc_onnx.prune.prune_model` with one "
        f"keep ratio ({keep_ratio:.3f}, L1 importance) for every group, giving {100 * mac_ratio:.1f} % "
        f"of the original MACs. SGD lr {args.lr} nesterov, cosine per step, batch {BATCH_SIZE}, weight "
        "decay 5e-4 on conv/linear weights, crop+flip; each row is its own run of that many epochs; "
        "2 % of the fine-tuning images are held out "
        "to pick the best epoch. Distillation: KL at T=4 weighted 0.5 against the unpruned model. "
        "Accuracy: top-1 on the 10k CIFAR-10 (JPEG copy) test set through onnxruntime.",
        "",
        subset_note,
        "",
        f"Unpruned: {100 * original_top1:.2f} %. Pruned, before fine-tuning: {100 * before:.2f} %.",
        "",
        "| distillation | epochs | test top-1 | s / epoch | best epoch (val top-1) |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for distill, epochs, top1, per_epoch, best_epoch, best_val in rows:
        lines.append(
            f"| {'yes' if distill else 'no'} | {epochs} | {100 * top1:.2f} % | {per_epoch:.0f} | "
            f"{best_epoch} ({100 * best_val:.1f} %) |"
        )
    return lines


if __name__ == "__main__":
    main()
