"""Width-only vs width+depth pruning of the shared CIFAR-10 models: accuracy and paired speed-up.

    python benchmarks/depth.py [--models resnet20,resnet56,mobilenetv2] [--data ../shared/data/cifar10]
        [--test-images 2000] [--train-images 5000] [--target mobile-cpu] [--out benchmarks/results/depth.md]

Every plan rounds kept channel counts to multiples of 8 (the widths onnxruntime runs fast; odd widths make a
pruned model slower than the original). Policies (no search, so that the comparison is about depth, not
about the agent):
- width-only, 50 % MACs: one keep ratio for every prunable group (L1 importance), the largest within
  50 % of the MACs, then groups raised one 8-channel step at a time (smallest keep first) while the MACs
  stay within 50 % (a uniform ratio alone jumps from 25 % to 72 % on the 16-channel stages);
- width+depth, 50 % MACs: the k residual branches whose output is smallest relative to their skip input
  (mean ||branch|| / ||skip|| on 128 training images) are deleted and the rest filled the same way to
  50 % of the MACs; k is picked among n/6, n/3, n/2 of the n removable branches by top-1 on 500
  held-out training images after BatchNormalization re-estimation;
- width-only at 3x: the largest uniform keep ratio whose measured speed-up reaches 3x (bisection);
- with depth at 3x: for keep 0.5, 0.625, 0.75, 0.875 and 1, the fewest deleted branches (smallest
  relative output first) that reach 3x measured; the candidate with the best held-out top-1 is kept;
- the fastest plans: every group at keep 0.2 (width-only), and the same with every removable branch
  deleted (the ceiling of depth, not a usable policy).
Accuracy: top-1 on a fixed class-balanced test subset after BatchNormalization re-estimation on 256
training images (no fine-tuning), and after 1 epoch of plain SGD fine-tuning (lr 0.01, batch 128, cosine)
on a fixed class-balanced training subset, CPU; the last epoch's weights are kept (no best-epoch
selection, so a row never silently falls back to its starting point).
Speed-ups: ``agmc_onnx.cost.measure_paired`` (A-B-B-A interleaved, median of per-round ratios with a
bootstrap 95 % interval) of each pruned model against the original on the target profile.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from agmc_onnx.analysis import analyze_model
from agmc_onnx.cost import measure_paired
from agmc_onnx.data import load_split, sample_subset, spec_from_model
from agmc_onnx.data.splits import split_train
from agmc_onnx.evaluate import evaluate_accuracy
from agmc_onnx.finetune import FinetuneConfig, Normalization, finetune
from agmc_onnx.groups.macs_model import MacsModel
from agmc_onnx.io import load_model
from agmc_onnx.passes.base import run_passes
from agmc_onnx.passes.reestimate_batchnorm import ReestimateBatchNormPass
from agmc_onnx.plan import PruningPlan, kept_unit_count
from agmc_onnx.prune import prune_model
from agmc_onnx.search.budget import fill_greedily
from agmc_onnx.search.recalibrate import calibration_batches
from agmc_onnx.validate import validate_pruned

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MODELS = ("resnet20", "resnet56", "mobilenetv2")


def branch_scores(analysis, batch: np.ndarray) -> dict[str, float]:
    """Mean ||branch output|| / ||skip input|| per removable branch on ``batch``."""
    model = onnx.ModelProto()
    model.CopyFrom(analysis.model)
    merges = {node.name: node for node in model.graph.node}
    pairs = {}
    for branch in analysis.depth.branches:
        merge = merges[branch.merge]
        skip = next(t for i, t in enumerate(merge.input) if i != branch.merge_input)
        pairs[branch.id] = (branch.output, skip)
    names = sorted({name for pair in pairs.values() for name in pair})
    del model.graph.output[:]
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = dict(zip(names, session.run(names, {session.get_inputs()[0].name: batch})))

    def norms(name: str) -> np.ndarray:
        return np.sqrt(np.square(values[name]).reshape(len(batch), -1).sum(axis=1))

    return {bid: float(np.mean(norms(out) / np.maximum(norms(skip), 1e-12))) for bid, (out, skip) in pairs.items()}


ROUND_TO = 8


def plan_of(analysis, keep: float, removed: tuple[str, ...] = (), round_to: int = ROUND_TO) -> PruningPlan:
    ratios = {g.id: keep for g in analysis.prunable_groups}
    ratios.update({analysis.depth.branch(b).groups[0]: 0.0 for b in removed})
    return PruningPlan(ratios, round_to=round_to)


def macs_fraction(analysis, macs: MacsModel, plan: PruningPlan) -> float:
    fractions = {}
    for group in analysis.prunable_groups:
        ratio = float(plan.keep_ratios.get(group.id, 1.0))
        fractions[group.id] = 0.0 if ratio == 0 else kept_unit_count(group, ratio, plan.round_to) / group.n_units
    return macs.macs(fractions) / macs.total


def keep_for_macs(analysis, macs: MacsModel, removed: tuple[str, ...], target: float) -> float:
    """Largest shared keep ratio (to 1e-3) whose plan stays within ``target`` of the MACs."""
    if macs_fraction(analysis, macs, plan_of(analysis, 1.0, removed)) <= target:
        return 1.0
    low, high = 0.02, 1.0
    while high - low > 1e-3:
        middle = (low + high) / 2
        if macs_fraction(analysis, macs, plan_of(analysis, middle, removed)) <= target:
            low = middle
        else:
            high = middle
    return low


def filled_plan(analysis, macs: MacsModel, removed: tuple[str, ...], target: float) -> PruningPlan:
    """The uniform plan of ``keep_for_macs``, then groups raised one 8-channel step at a time (smallest keep
    first) while the MACs stay within ``target``: with multiples of 8 on 16-channel stages a uniform ratio
    alone jumps from 25 % to 72 % of the MACs."""
    plan = plan_of(analysis, keep_for_macs(analysis, macs, removed, target), removed)
    groups = sorted((g for g in analysis.prunable_groups if plan.keep_ratios.get(g.id, 1.0) > 0), key=lambda g: g.id)
    start = [kept_unit_count(g, plan.keep_ratios.get(g.id, 1.0), ROUND_TO) for g in groups]
    choices = [np.unique(np.r_[np.arange(c, g.n_units, ROUND_TO), g.n_units]) for g, c in zip(groups, start)]

    def ratios_of(counts) -> dict[str, float]:
        return dict(plan.keep_ratios, **{g.id: int(c) / g.n_units for g, c in zip(groups, counts)})

    def meets(counts) -> bool:
        return macs_fraction(analysis, macs, PruningPlan(ratios_of(counts), round_to=ROUND_TO)) <= target

    counts = fill_greedily(start, choices, np.array([g.n_units for g in groups]), meets)
    return PruningPlan(ratios_of(counts), round_to=ROUND_TO)


class Bench:
    """One model: data, analysis and the measuring helpers every policy goes through."""

    def __init__(self, name: str, args) -> None:
        self.name, self.args = name, args
        self.original = load_model(args.model_dir / f"cifar10_{name}.onnx")
        self.analysis = analyze_model(self.original)
        self.macs = MacsModel.from_analysis(self.analysis)
        self.spec = spec_from_model(self.original)
        train = load_split(args.data, "train", self.spec)
        held_out, rest = split_train(train, 1000, seed=0)
        self.held_out = sample_subset(held_out, 500, seed=0)
        self.train = sample_subset(rest, args.train_images, seed=0)
        self.test = sample_subset(load_split(args.data, "test", self.spec), args.test_images, seed=0)
        _, self.batches = calibration_batches(rest, self.spec)
        self.scores = branch_scores(self.analysis, self.batches[0])

    def prune(self, plan: PruningPlan):
        result = prune_model(self.original, plan, self.analysis)
        validate_pruned(self.original, self.analysis, result.selection, result.model)
        return result, run_passes(result.model, [ReestimateBatchNormPass(self.batches)])

    def speedup(self, model) -> dict:
        paired = measure_paired(self.original, model, self.args.target, n_rounds=self.args.rounds)
        return {"speedup": paired.speedup, "low": paired.speedup_low, "high": paired.speedup_high}

    def finetuned_top1(self, model) -> float:
        normalization = Normalization(self.spec.mean, self.spec.std, self.spec.scale)
        config = FinetuneConfig(epochs=1, batch_size=128, lr=0.01, seed=0, device="cpu", val_fraction=0.0)
        result = finetune(model, self.train.images, self.train.labels, normalization, config)
        return evaluate_accuracy(result.model, self.test, self.spec).top1

    def row(self, label: str, plan: PruningPlan, finetune_too: bool) -> dict:
        started = time.perf_counter()
        result, calibrated = self.prune(plan)
        row = {
            "policy": label,
            "removed_branches": list(result.selection.removed_branches),
            "keep_ratio": max(float(r) for r in plan.keep_ratios.values()),
            "mean_keep": float(np.mean([r for r in plan.keep_ratios.values() if r > 0])),
            "round_to": plan.round_to,
            "macs_fraction": result.after.macs / result.before.macs,
            "nodes": len(result.model.graph.node),
            "top1_no_ft": evaluate_accuracy(calibrated, self.test, self.spec).top1,
            **self.speedup(result.model),
        }
        if finetune_too:
            row["top1_1_epoch"] = self.finetuned_top1(calibrated)
        row["seconds"] = time.perf_counter() - started
        print(
            f"  {self.name} {label}: {json.dumps({k: v for k, v in row.items() if k != 'removed_branches'})}",
            flush=True,
        )
        return row

    def held_out_top1(self, plan: PruningPlan) -> float:
        return evaluate_accuracy(self.prune(plan)[1], self.held_out, self.spec).top1


def depth_choice(bench: Bench, target: float) -> tuple[tuple[str, ...], list[dict]]:
    """The number of deleted branches (smallest relative output first) that scores best on held-out images."""
    ranked = tuple(sorted(bench.scores, key=bench.scores.get))
    n = len(ranked)
    trials = []
    for k in sorted({max(1, n // 6), max(1, n // 3), max(1, n // 2)}):
        plan = filled_plan(bench.analysis, bench.macs, ranked[:k], target)
        trials.append({"k": k, "held_out_top1": bench.held_out_top1(plan)})
    best = max(trials, key=lambda t: t["held_out_top1"])
    return ranked[: best["k"]], trials


def width_for_speedup(bench: Bench, target_speedup: float) -> float | None:
    """Largest uniform keep ratio whose measured speed-up reaches ``target_speedup`` (bisection, paired)."""

    def reaches(keep: float) -> bool:
        result = prune_model(bench.original, plan_of(bench.analysis, keep), bench.analysis)
        return bench.speedup(result.model)["speedup"] >= target_speedup

    low, high = 0.2, 1.0
    if not reaches(low):
        return None
    for _ in range(6):
        middle = (low + high) / 2
        low, high = (middle, high) if reaches(middle) else (low, middle)
    return low


def depth_for_speedup(bench: Bench, keep: float, target_speedup: float) -> tuple[str, ...] | None:
    """The fewest deleted branches (smallest relative output first) that reach ``target_speedup`` at ``keep``;
    None when even every branch deleted does not (bisection on the count, paired measurements)."""
    ranked = tuple(sorted(bench.scores, key=bench.scores.get))

    def reaches(k: int) -> bool:
        result = prune_model(bench.original, plan_of(bench.analysis, keep, ranked[:k]), bench.analysis)
        return bench.speedup(result.model)["speedup"] >= target_speedup

    if not reaches(len(ranked)):
        return None
    low, high = 0, len(ranked)  # reaches(high) holds; reaches(low) unknown until tested
    while high - low > 1:
        middle = (low + high) // 2
        if reaches(middle):
            high = middle
        else:
            low = middle
    return ranked[:high]


def depth_at_speedup(bench: Bench, target_speedup: float) -> tuple[float, tuple[str, ...]] | None:
    """Among keep ratios 0.5 to 1, each with the fewest branches that reach ``target_speedup``, the one
    that scores best on held-out images after BatchNormalization re-estimation."""
    candidates = []
    for keep in (0.5, 0.625, 0.75, 0.875, 1.0):
        removed = depth_for_speedup(bench, keep, target_speedup)
        if removed is not None:
            candidates.append((bench.held_out_top1(plan_of(bench.analysis, keep, removed)), keep, removed))
    if not candidates:
        return None
    _, keep, removed = max(candidates, key=lambda c: c[0])
    return keep, removed


def run_model(name: str, args) -> dict:
    bench = Bench(name, args)
    analysis = bench.analysis
    all_branches = tuple(b.id for b in analysis.depth.branches)
    removed, trials = depth_choice(bench, 0.5)
    rows = [bench.row("width-only, 50 % MACs", filled_plan(analysis, bench.macs, (), 0.5), True)]
    rows.append(bench.row("width+depth, 50 % MACs", filled_plan(analysis, bench.macs, removed, 0.5), True))
    width_3x = width_for_speedup(bench, 3.0)
    if width_3x is not None:
        rows.append(bench.row(f"width-only at 3x (keep {width_3x:.3f})", plan_of(analysis, width_3x), True))
    depth_3x = depth_at_speedup(bench, 3.0)
    if depth_3x is not None:
        keep, branches = depth_3x
        rows.append(bench.row(f"with depth at 3x (keep {keep}, {len(branches)} branches)",
                              plan_of(analysis, keep, branches), True))
    rows.append(bench.row("width-only fastest (keep 0.2)", plan_of(analysis, 0.2), True))
    rows.append(bench.row("with depth fastest (all branches, keep 0.2)", plan_of(analysis, 0.2, all_branches), False))
    return {
        "model": name,
        "original_top1": evaluate_accuracy(bench.original, bench.test, bench.spec).top1,
        "removable_branches": len(all_branches),
        "branch_scores": bench.scores,
        "depth_trials": trials,
        "rows": rows,
    }


def render(results: list[dict], args) -> str:
    lines = [
        "# Width-only vs width+depth pruning (shared CIFAR-10 models)",
        "",
        f"Command: `python benchmarks/depth.py --models {args.models} --test-images {args.test_images} "
        f"--train-images {args.train_images} --target {args.target} --rounds {args.rounds}` on this machine's CPU "
        "(2 cores; the benchmark ran alone on one core, every other process of the machine pinned to the other; "
        "1-minute load average of the whole machine after each model: "
        + ", ".join(f"{r['model']} {r['load_average']:.1f}" for r in results)
        + ").",
        "",
        (__doc__ or "").split("\n\n", 2)[2].strip(),
        "",
        f"Reduced protocol: accuracy on a fixed class-balanced subset of {args.test_images} of the 10,000 test "
        f"images; the 1-epoch fine-tuning runs on a fixed class-balanced subset of {args.train_images} of the "
        "49,000 training images left after the held-out set (one epoch over the full set would take about "
        "10x longer per policy on this shared CPU).",
        "",
    ]
    for result in results:
        lines += [
            f"## {result['model']}: original {result['original_top1']:.2%}, {result['removable_branches']} removable "
            "residual branches",
            "",
            "| policy | deleted branches | mean keep ratio | MACs | operators | speed-up (95 % CI) "
            "| top-1, BN re-est. | "
            "top-1, 1 epoch |",
            "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
        ]
        for row in result["rows"]:
            tuned = f"{row['top1_1_epoch']:.2%}" if "top1_1_epoch" in row else "—"
            lines.append(
                f"| {row['policy']} | {len(row['removed_branches'])} | {row.get('mean_keep', row['keep_ratio']):.3f} | "
                f"{row['macs_fraction']:.1%} | {row['nodes']} | "
                f"{row['speedup']:.2f}x ({row['low']:.2f}–{row['high']:.2f}) "
                f"| {row['top1_no_ft']:.2%} | {tuned} |"
            )
        trials = ", ".join(f"k={t['k']}: {t['held_out_top1']:.1%}" for t in result["depth_trials"])
        lines += ["", f"Deleted-branch count chosen on held-out training images ({trials}).", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "zoo")
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "cifar10")
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--train-images", type=int, default=5000)
    parser.add_argument("--target", default="mobile-cpu")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "depth.md")
    parser.add_argument("--render-only", action="store_true", help="Rewrite OUT from the stored JSON results.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    json_path = args.out.with_suffix(".json")
    done = json.loads(json_path.read_text()) if json_path.exists() else {}
    for name in [] if args.render_only else args.models.split(","):
        print(f"{name} ...", flush=True)
        done[name] = run_model(name, args)
        done[name]["protocol"] = {k: getattr(args, k) for k in ("test_images", "train_images", "target", "rounds")}
        done[name]["load_average"] = os.getloadavg()[0]
        json_path.write_text(json.dumps(done, indent=2))
    results = [done[m] for m in MODELS if m in done]
    args.models = ",".join(r["model"] for r in results)
    for key, value in results[0]["protocol"].items():  # the protocol the stored results were measured with
        setattr(args, key, value)
    args.out.write_text(render(results, args))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
