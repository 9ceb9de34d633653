"""Accuracy without long fine-tuning: importance criteria × BN re-estimation vs least-squares reconstruction.

    python benchmarks/accuracy.py grid [--models resnet20,resnet56,mobilenetv2] [--test-images 2000]
    python benchmarks/accuracy.py screen --models resnet56 --plans searched-bn-r8-40,... --train-images 5000
    python benchmarks/accuracy.py finetune --models resnet56 [--epochs 1] [--train-images 0]
    python benchmarks/accuracy.py render

``grid``: for every model, the uniform plan at 50 % MACs and the committed searched policy
(``benchmarks/results/compress/<model>/report.json``), each channel-importance criterion, then test top-1
after BatchNormalization re-estimation only and after reconstruction (which re-estimates BN too), with the
wall time of each step. ``screen``: a short fine-tuning of each candidate plan, scored on held-out
training images. ``finetune``: one epoch from the best reconstructed point of the grid. Results
accumulate in ``benchmarks/results/accuracy.json`` (a rerun skips what is there); ``render`` writes
``accuracy.md``. Run heavy phases under ``flock /tmp/agmc-heavy.lock``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from accuracy_report import render  # benchmarks/ is on sys.path when run as a script

from agmc_onnx.analysis import analyze_model
from agmc_onnx.cost.session import create_session
from agmc_onnx.data import load_split, sample_subset, spec_from_model
from agmc_onnx.evaluate import evaluate_accuracy
from agmc_onnx.importance import build_importance
from agmc_onnx.io import load_model
from agmc_onnx.passes.base import run_passes
from agmc_onnx.passes.reconstruct_weights import RefitSettings
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


class Store:
    """Results by key in one JSON file, written after every row so an interrupted run resumes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = json.loads(path.read_text()) if path.exists() else {}

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def put(self, key: str, row: dict) -> None:
        if self.path.exists():  # another phase may have added rows meanwhile
            self.rows = {**json.loads(self.path.read_text()), **self.rows}
        self.rows[key] = row
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.rows, indent=1))
        os.replace(tmp, self.path)


def uniform_at_budget(model, analysis, round_to: int = ROUND_TO) -> PruningPlan:
    """The largest single keep ratio (counts rounded to ``round_to``) keeping at most 50 % of the MACs."""
    low, high = 0.2, 1.0
    for _ in range(14):
        middle = (low + high) / 2
        result = prune_model(model, uniform_plan(analysis.groups, middle, round_to), analysis=analysis)
        low, high = (middle, high) if result.after.macs <= BUDGET * result.before.macs else (low, middle)
    return uniform_plan(analysis.groups, low, round_to)


def searched_plan(name: str, store: Store | None = None, plan_name: str = "searched") -> PruningPlan | None:
    """The committed ``compress`` policy, or a policy the ``reward`` phase searched (``searched-…``)."""
    if plan_name != "searched":
        row = (store.rows if store else {}).get(f"{name}/reward/{plan_name.removeprefix('searched-')}")
        return None if row is None else PruningPlan(row["keep_ratios"], round_to=row["round_to"])
    report = RESULTS / "compress" / name / "report.json"
    if not report.exists():
        return None
    ratios = json.loads(report.read_text())["keep_ratios"]
    return PruningPlan(ratios, round_to=ROUND_TO)


def plan_named(name: str, plan_name: str, model, analysis, store: Store) -> PruningPlan | None:
    """``uniform`` / ``uniform-r4`` (rounded to 4), ``searched`` (committed) or ``searched-<reward row>``."""
    if plan_name.startswith("uniform"):
        return uniform_at_budget(model, analysis, int(plan_name.partition("-r")[2] or ROUND_TO))
    return searched_plan(name, store, plan_name)


def full_test_set(spec):
    return load_split(SHARED / "data" / "cifar10", "test", spec)


def setup(name: str, test_images: int):
    """The model, its preprocessing, the training split, the seeded test subset and the analysis."""
    data = SHARED / "data" / "cifar10"
    model = load_model(model_path(name))
    spec = spec_from_model(model)
    train = load_split(data, "train", spec)
    test = sample_subset(load_split(data, "test", spec), test_images, seed=0)
    return model, spec, train, test, analyze_model(model)


def run_grid(args, store: Store) -> None:
    for name in args.models.split(","):
        model, spec, train, test, analysis = setup(name, args.test_images)
        rows, batches = calibration_batches(train, spec, 256, 64)
        labels = [train.labels[r] for r in rows]
        plans = {p: plan_named(name, p, model, analysis, store) for p in args.plans.split(",")}
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
                row = grid_row(
                    model, analysis, plan, importance_name, batches, labels, train, test, spec, args.full_test
                )
                store.put(key, row)
                log(f"{key}: {store.rows[key]}")


def grid_row(model, analysis, plan, importance_name, batches, labels, train, test, spec, full_test=False) -> dict:
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
        "reconstruction": "residual sums",
        "round_to": plan.round_to,
        "macs_fraction": result.after.macs / result.before.macs,
        "select_and_prune_s": prune_s,
        "bn_only_s": bn_s,
        "reconstruct_s": reconstructed.seconds,
        "reconstruct_images": reconstructed.n_images,
        "layers_refitted": reconstructed.layers_refitted,
        "top1_bn_only": top1(bn_only, test, spec),
        "top1_reconstructed": top1(reconstructed.model, test, spec),
        "top1_reconstructed_bn": top1(with_bn, test, spec),
        **({"top1_reconstructed_full_test": top1(reconstructed.model, full_test_set(spec), spec)} if full_test else {}),
    }


SWEEP = {  # label -> reconstruction settings, tried on one pruned model
    # labels without "every later layer" re-fit only the layers that lost input channels (downstream=False
    # spelled out: the library's default re-fits later layers too)
    "own outputs, 256 images, 16 positions": dict(
        calibration_images=256, downstream=False, refit=RefitSettings(residual_sums=False)
    ),
    "residual sums, 256 images, 16 positions": dict(calibration_images=256, downstream=False),
    "residual sums, 256 images, 64 positions": dict(
        calibration_images=256, downstream=False, refit=RefitSettings(positions_per_image=64)
    ),
    "residual sums, 512 images, 32 positions": dict(
        calibration_images=512, downstream=False, refit=RefitSettings(positions_per_image=32)
    ),
    "residual sums, 1024 images, 16 positions": dict(calibration_images=1024, downstream=False),
    "residual sums, ridge 1e-2": dict(calibration_images=256, downstream=False, refit=RefitSettings(ridge=1e-2)),
    "residual sums, ridge 1e-4": dict(calibration_images=256, downstream=False, refit=RefitSettings(ridge=1e-4)),
    "residual sums + every later layer, 256 images": dict(calibration_images=256, downstream=True),
    "residual sums + every later layer, 512 images": dict(calibration_images=512, downstream=True),
    "residual sums + every later layer, 1024 images": dict(calibration_images=1024, downstream=True),
    "residual sums + every later layer, 2048 images": dict(calibration_images=2048, downstream=True),
}


def run_sweep(args, store: Store) -> None:
    """Reconstruction settings on one pruned model: ``--sweep-plan`` (the committed searched plan by default),
    ``--sweep-importance``; ``--full-test`` scores each on all 10,000 test images too."""
    for name in args.models.split(","):
        model, spec, train, test, analysis = setup(name, args.test_images)
        rows, batches = calibration_batches(train, spec, 256, 64)
        importance = build_importance(args.sweep_importance, batches[:2], [train.labels[r] for r in rows[:2]])
        plan = plan_named(name, args.sweep_plan, model, analysis, store)
        result = prune_model(model, plan, analysis=analysis, importance=importance)
        reestimate = ReestimateBatchNormPass(calibration_batches(train, spec, 256)[1])
        phase = "sweep" if args.sweep_plan == "searched" else f"sweep@{args.sweep_plan}"
        for label, settings in SWEEP.items():
            key = f"{name}/{phase}/{label}"
            if not any(word in label for word in args.sweep.split(";")) or (key in store and not args.again):
                continue
            config = ReconstructConfig(**settings)
            done = reconstruct_pruned(analysis, result.selection, result.model, train, spec, config)
            full = {}
            if args.full_test:
                full["top1_reconstructed_full_test"] = top1(done.model, full_test_set(spec), spec)
            store.put(key, {
                "importance": args.sweep_importance, "macs_fraction": result.after.macs / result.before.macs,
                "top1_reconstructed": top1(done.model, test, spec),
                "top1_reconstructed_bn": top1(run_passes(done.model, [reestimate]), test, spec),
                "reconstruct_s": done.seconds, "reconstruct_images": done.n_images,
                "layers_refitted": done.layers_refitted, **full,
            })
            log(f"{key}: {store.rows[key]}")


def run_reward(args, store: Store) -> None:
    """Short searches (``kind-rN:episodes``): BN-re-estimation vs reconstruction reward, their wall time,
    and the plan each finds scored after reconstruction on the test subset."""
    from agmc_onnx.search.model_search import search_model
    from agmc_onnx.search.reward import RewardConfig
    from agmc_onnx.search.run import SearchConfig

    for name in args.models.split(","):
        model, spec, train, test, analysis = setup(name, args.test_images)
        for variant in args.searches.split(","):
            label, _, episodes = variant.partition(":")
            kind, _, round_to = label.partition("-r")
            key = f"{name}/reward/{label}-{episodes}" + (f"-s{args.search_seed}" if args.search_seed else "")
            key += "-rescale" if args.budget_mode == "rescale" else ""
            if key in store:
                continue
            config = SearchConfig(n_episodes=int(episodes), flops_keep_ratio=BUDGET, round_to=int(round_to),
                                  importance=args.sweep_importance, seed=args.search_seed,
                                  budget_mode=args.budget_mode)
            started = time.perf_counter()
            reward = RewardConfig(reconstruct=kind == "reconstruct")
            found = search_model(analysis, SHARED / "data" / "cifar10", config, spec=spec, reward=reward)
            seconds = time.perf_counter() - started
            result = prune_model(model, found.plan, analysis=analysis)
            done = reconstruct_pruned(analysis, result.selection, result.model, train, spec)
            store.put(key, {
                "reward": kind, "seed": args.search_seed, "budget_mode": args.budget_mode, "round_to": int(round_to),
                "episodes": int(episodes),
                "search_s": seconds,
                "best_reward": found.best_reward, "best_episode": found.best_episode,
                "keep_ratios": dict(found.plan.keep_ratios), "macs_fraction": result.after.macs / result.before.macs,
                "top1_reconstructed": top1(done.model, test, spec),
            })
            log(f"{key}: {store.rows[key]}")


def top1(model, dataset, spec) -> float:
    return evaluate_accuracy(create_session(model), dataset, spec, batch_size=250).top1


def finetune_config(args, epochs: int, val_fraction: float):
    """The fine-tuning settings of ``finetune`` and ``screen`` from the command line."""
    from agmc_onnx.finetune import FinetuneConfig

    return FinetuneConfig(
        epochs=epochs, lr=args.lr, distill_weight=args.kd_weight, device="cpu", val_fraction=val_fraction,
        seed=args.seed, batch_size=args.batch_size, distill_temperature=args.kd_temperature,
        label_smoothing=args.label_smoothing, weight_decay=args.weight_decay, warmup_fraction=args.warmup_fraction,
        crop_padding_px=args.crop_padding, horizontal_flip=not args.no_flip,
        feature_distill_weight=args.feature_kd,
    )


def run_finetune(args, store: Store) -> None:
    from agmc_onnx.finetune import Normalization, finetune

    data = SHARED / "data" / "cifar10"
    for name in args.models.split(","):
        best_key = args.start or max(
            (k for k in store.rows if k.startswith(f"{name}/") and "top1_bn_only" in store.rows[k]),
            key=lambda k: store.rows[k]["top1_reconstructed"],
        )
        _, plan_name, importance_name = best_key.split("/")
        for variant, distill in (("kd", True), ("plain", False)):
            key = f"{name}/finetune/{variant}{args.tag}"
            if key in store or variant not in args.variants.split(","):
                continue
            model = load_model(model_path(name))
            spec = spec_from_model(model)
            train = load_split(data, "train", spec)
            test = load_split(data, "test", spec)
            analysis = analyze_model(model)
            rows, batches = calibration_batches(train, spec, 256, 64)
            plan = plan_named(name, plan_name, model, analysis, store)
            importance = build_importance(importance_name, batches[:2], [train.labels[r] for r in rows[:2]])
            result = prune_model(model, plan, analysis=analysis, importance=importance)
            refit = ReconstructConfig(**SWEEP[args.start_settings]) if args.start_settings else ReconstructConfig()
            start = reconstruct_pruned(analysis, result.selection, result.model, train, spec, refit).model
            before = top1(start, test, spec)
            images, labels = train.images, train.labels
            if args.train_images:
                subset = sample_subset(train, args.train_images, seed=0)
                images, labels = subset.images, subset.labels
            config = finetune_config(args, args.epochs, args.val_fraction)
            norm = Normalization(tuple(spec.mean), tuple(spec.std), spec.scale)
            log(f"{key}: fine-tuning from {best_key} ({before:.4f}) on {len(labels)} images")
            started = time.perf_counter()
            channels = analysis.kept_positions(result.selection.dropped_roots(analysis.groups))
            tuned = finetune(start, images, labels, norm, config, teacher=model if distill else None,
                             feature_channels=channels if args.feature_kd_kept else None)
            seconds = time.perf_counter() - started
            # BN statistics measured on clean images once the weights have settled (training mode tracked a
            # moving average over augmented batches while the weights were still moving)
            settled = run_passes(tuned.model, [ReestimateBatchNormPass(calibration_batches(train, spec, 2048)[1])])
            store.put(key, {
                "start": best_key, "top1_before": before, "top1_after": top1(tuned.model, test, spec),
                "top1_after_bn": top1(settled, test, spec),
                "train_images": int(len(labels)), "epochs": args.epochs, "lr": args.lr,
                "distill_weight": args.kd_weight if distill else 0.0, "seconds": seconds,
                "reconstruction": args.start_settings or "residual sums", "val_fraction": args.val_fraction,
                "seed": args.seed, "batch_size": args.batch_size, "kd_temperature": args.kd_temperature,
                "label_smoothing": args.label_smoothing, "weight_decay": args.weight_decay,
                "warmup_fraction": args.warmup_fraction, "best_epoch": tuned.best_epoch,
                "crop_padding_px": args.crop_padding, "horizontal_flip": not args.no_flip,
                "feature_distill_weight": args.feature_kd, "feature_kept_channels": args.feature_kd_kept,
                "train_loss": tuned.history[-1].train_loss,
                "val_top1_by_epoch": [  # None where nothing was held out (strict JSON has no NaN)
                    None if np.isnan(record.val_top1) else record.val_top1 for record in tuned.history
                ],
            })
            log(f"{key}: {store.rows[key]}")


def run_screen(args, store: Store) -> None:
    """Which plan fine-tunes best: each candidate plan (``--plans``), reconstructed, then a short distillation
    run (``--train-images``) and scored on held-out TRAINING images (``--heldout-images``, never the test set),
    so that the start of the one-epoch run can be chosen on what it becomes after training rather than on its
    no-fine-tune score. The test score is recorded too, to judge the screen, not to choose."""
    from agmc_onnx.data.splits import split_train
    from agmc_onnx.finetune import Normalization, finetune

    for name in args.models.split(","):
        model, spec, train, test, analysis = setup(name, args.test_images)
        heldout, pool = split_train(train, args.heldout_images, seed=0)
        short = sample_subset(pool, args.train_images, seed=args.seed)
        rows, batches = calibration_batches(pool, spec, 256, 64)
        importance = build_importance(args.sweep_importance, batches[:2], [pool.labels[r] for r in rows[:2]])
        norm = Normalization(tuple(spec.mean), tuple(spec.std), spec.scale)
        config = finetune_config(args, 1, 0.0)  # the short run: its --train-images are one pass
        for plan_name in args.plans.split(","):
            key = f"{name}/screen/{plan_name}{args.tag}"
            plan = plan_named(name, plan_name, model, analysis, store)
            if key in store or plan is None:
                continue
            started = time.perf_counter()
            result = prune_model(model, plan, analysis=analysis, importance=importance)
            start = reconstruct_pruned(analysis, result.selection, result.model, pool, spec).model
            tuned = finetune(start, short.images, short.labels, norm, config, teacher=model).model
            store.put(key, {
                "plan": plan_name, "importance": args.sweep_importance, "train_images": int(short.n_images),
                "lr": args.lr, "distill_weight": args.kd_weight, "seed": args.seed,
                "heldout_images": int(heldout.n_images), "macs_fraction": result.after.macs / result.before.macs,
                "heldout_before": top1(start, heldout, spec), "heldout_after": top1(tuned, heldout, spec),
                "test_before": top1(start, test, spec), "test_after": top1(tuned, test, spec),
                "test_images": int(test.n_images), "seconds": time.perf_counter() - started,
            })
            log(f"{key}: {store.rows[key]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=("grid", "sweep", "reward", "screen", "finetune", "render"))
    parser.add_argument("--models", default="resnet20,resnet56,mobilenetv2")
    parser.add_argument("--importances", default=",".join(IMPORTANCES))
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--conditions", default="", help="What else ran on the machine (stated in the output, "
                        "with --test-images, until stated again)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--kd-weight", type=float, default=0.5)
    parser.add_argument("--kd-temperature", type=float, default=4.0)
    parser.add_argument("--batch-size", type=int, default=128, help="finetune: images per SGD step")
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--warmup-fraction", type=float, default=0.0, help="finetune: linear lr warm-up share")
    parser.add_argument("--crop-padding", type=int, default=4,
                        help="finetune: random-crop padding in pixels (0: no crop)")
    parser.add_argument("--no-flip", action="store_true", help="finetune: no random horizontal flips")
    parser.add_argument("--feature-kd", type=float, default=0.0,
                        help="finetune: weight of the residual-sum feature distillation term (0 here; the "
                        "library's default is 20)")
    parser.add_argument("--feature-kd-kept", action="store_true",
                        help="finetune: residual sums that lost channels are distilled on the ones they kept too")
    parser.add_argument("--variants", default="kd,plain")
    parser.add_argument("--train-images", type=int, default=0, help="0: the whole training split")
    parser.add_argument("--val-fraction", type=float, default=0.02, help="finetune: held out to pick the best "
                        "epoch (the start competes); 0: keep the last epoch")
    parser.add_argument("--seed", type=int, default=0, help="finetune: seeds shuffling and augmentation")
    parser.add_argument("--heldout-images", type=int, default=2000, help="screen: training images held out to "
                        "score the short runs")
    parser.add_argument("--start", default="", help="finetune: the grid row to start from (default: the best)")
    parser.add_argument("--start-settings", default="", choices=("", *SWEEP), help="finetune: reconstruct the "
                        "start with these sweep settings (default: the library's)")
    parser.add_argument("--tag", default="", help="finetune: a suffix that keeps this run's row apart")
    parser.add_argument("--sweep", default="own;sums", help="sweep: settings whose label holds one of these (;)")
    parser.add_argument("--again", action="store_true", help="sweep: re-run rows already in the results (to "
                        "re-time them on a quiet machine)")
    parser.add_argument("--sweep-plan", default="searched", help="sweep: the plan (as in --plans) to re-fit")
    parser.add_argument("--sweep-importance", default="l2", help="sweep and reward: the channel importance")
    parser.add_argument("--searches", default="bn-r8:40,reconstruct-r8:6", help="reward: kind-rN:episodes, …")
    parser.add_argument("--budget-mode", default="wall", choices=("wall", "rescale"), help="reward: how episodes "
                        "meet the budget (search --budget-mode)")
    parser.add_argument("--search-seed", type=int, default=0, help="reward: the search's seed (key suffix -sN)")
    parser.add_argument("--full-test", action="store_true", help="grid, sweep: also score reconstruction on all 10,000")
    parser.add_argument("--plans", default="uniform,searched", help="grid: uniform[-rN], searched[-<reward row>]")
    parser.add_argument("--results", type=Path, default=RESULTS / "accuracy.json")
    args = parser.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # the cores this process may use
    store = Store(args.results)
    if args.phase == "grid":
        run_grid(args, store)
    elif args.phase == "sweep":
        run_sweep(args, store)
    elif args.phase == "reward":
        run_reward(args, store)
    elif args.phase == "screen":
        run_screen(args, store)
    elif args.phase == "finetune":
        run_finetune(args, store)
    # the markdown's stated conditions and test-subset size persist in the results ("render"), so that a
    # phase run without --conditions re-renders under the last ones stated instead of erasing them
    if args.conditions:
        store.put("render", {"conditions": args.conditions, "test_images": args.test_images})
    stated = store.rows.get("render", {"conditions": "", "test_images": args.test_images})
    rows = {key: row for key, row in store.rows.items() if key != "render"}
    args.results.with_suffix(".md").write_text(render(rows, stated["test_images"], stated["conditions"]))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
