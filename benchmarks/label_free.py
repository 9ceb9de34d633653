"""compress without labels: zoo classifiers compressed label-free (fidelity reward, pure distillation) beside
the labelled run with the same budgets and seeds, both then scored on labelled CIFAR-10 test images; and a
denoising CNN (not a classifier) compressed at 50 % MACs from an .npz of its inputs, scored by PSNR.

Reduced protocol for a shared 2-core CPU (every setting is printed in the output): few search episodes, a
small reward set and one fine-tuning epoch on part of the demo's training images. The label-free runs read
copies of the demo images renamed by number in flat archives (no class folders, no class names, no labels).
Compress's own paired latency step is replaced by a not-measured placeholder, so the heavy part of this
script never overlaps timing runs. The one timing, `--time-denoiser`, pairs the compressed denoiser with
the original after its compress run (run it alone on a core).

    nice -n 19 .venv/bin/python benchmarks/label_free.py [--models resnet20 resnet56 mobilenetv2]
    .venv/bin/python benchmarks/label_free.py --denoiser-only --time-denoiser   # keeps the classifiers' rows
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from agmc_onnx.compress import pipeline
from agmc_onnx.compress.config import CompressConfig
from agmc_onnx.cost.latency import LatencyStats, PairedLatency
from agmc_onnx.cost.latency import measure_paired as timed_pair
from agmc_onnx.cost.session import create_session
from agmc_onnx.data import load_split, sample_subset, spec_from_model
from agmc_onnx.evaluate import evaluate_accuracy
from agmc_onnx.io import load_model
from agmc_onnx.models.denoiser import DENOISER_SPEC, noisy_pairs, psnr_db
from agmc_onnx.models.zoo import ZOO_DIR, zoo_model_path

ROOT = Path(__file__).resolve().parent.parent
DENOISER = ZOO_DIR / "cifar10_denoiser.onnx"
TEXT_MODEL = ZOO_DIR / "text_topics.onnx"


def _latency_not_measured(model_a, model_b, target, **_):
    """Stands in for ``measure_paired``: this benchmark times nothing (NaN everywhere, 0 rounds)."""
    stats = LatencyStats(math.nan, math.nan, math.nan, 0, target, 1)
    return PairedLatency(math.nan, math.nan, math.nan, stats, stats, 0)


def _unlabelled_copy(archive: Path, destination: Path, seed: int) -> None:
    """The archive's images in a flat tar, shuffled and renamed by number: nothing left that names a class."""
    with tarfile.open(archive) as source:
        blobs = [source.extractfile(m).read() for m in source if m.isfile()]
    order = np.random.default_rng(seed).permutation(len(blobs))
    with tarfile.open(destination, "w") as target:
        for number, index in enumerate(order):
            info = tarfile.TarInfo(f"{number:05d}.jpg")
            info.size = len(blobs[index])
            target.addfile(info, io.BytesIO(blobs[index]))


def _compress(model: Path, data: Path, out: Path, args, task: str, name: str):
    config = CompressConfig(
        data=str(data),
        flops=0.5,
        episodes=args.episodes,
        finetune_epochs=args.finetune_epochs,
        finetune_images=args.finetune_images,
        reward_size=args.reward_size,
        round_to=8,
        task=task,
        seed=args.seed,
    )
    wall, cpu = time.perf_counter(), time.process_time()
    run = pipeline.run_compress(model, config, out, progress=lambda e: _print_stage(name, e))
    return run, {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def _print_stage(name: str, event) -> None:
    if event.lasting:
        print(f"{name} [{event.stage}] {event.message}", flush=True)


def unlabelled_demo(args, work: Path) -> Path:
    unlabelled = work / "unlabelled"
    unlabelled.mkdir()
    for split in ("train", "test"):
        _unlabelled_copy(ZOO_DIR / f"cifar10_demo_{split}.tar.xz", unlabelled / f"demo_{split}.tar", args.seed)
    return unlabelled


def classifier(name: str, args, work: Path, unlabelled: Path) -> dict:
    """The labelled and the label-free run of zoo model ``name``, both scored on labelled CIFAR-10 test images."""
    path = zoo_model_path(name)
    spec = spec_from_model(load_model(path))
    test = sample_subset(load_split(args.cifar, "test", spec), args.score_images, seed=args.seed + 7)
    original = evaluate_accuracy(path, test, spec).top1
    row = {"original": original, "score_images": test.n_images}
    for mode, data, task in (("labelled", ZOO_DIR, "accuracy"), ("label-free", unlabelled, "fidelity")):
        run, cost = _compress(path, data, work / f"{name}-{mode}", args, task, f"{name} {mode}")
        report = run.report
        row[mode] = {
            "test_top1": evaluate_accuracy(run.model, test, spec).top1,
            "task": report.task,
            "fidelity_after_search": report.searched.test_fidelity,
            "fidelity_final": report.final.test_fidelity,
            "macs_kept": report.final.macs / report.original.macs,
            "best_episode": report.best_episode,
            **cost,
        }
    return row


def _class_line(name: str, row: dict) -> str:
    lab, free = row["labelled"], row["label-free"]
    return (
        f"| {name} | {row['original']:.2%} | {lab['test_top1']:.2%} | {free['test_top1']:.2%} "
        f"| {100 * (free['test_top1'] - lab['test_top1']):+.2f} "
        f"| {lab['fidelity_final']:.1%} / {free['fidelity_final']:.1%} "
        f"| {lab['macs_kept']:.1%} / {free['macs_kept']:.1%} "
        f"| {lab['cpu_s'] / 60:.1f} / {free['cpu_s'] / 60:.1f} min |"
    )


def train_denoiser_model(args) -> dict:
    """Train the denoiser (a fixed number of steps) and write it into the zoo with its JSON."""
    from agmc_onnx.models.denoiser import main as train_main

    cpu = time.process_time()
    train_main(["--data", str(args.cifar), "--steps", str(args.denoiser_steps), "-o", str(DENOISER)])
    info = json.loads(DENOISER.with_suffix(".json").read_text())
    return {**info, "benchmark_cpu_s": time.process_time() - cpu}


def denoiser(args, work: Path) -> dict:
    trained = train_denoiser_model(args) if args.retrain_denoiser or not DENOISER.exists() else None
    train_images = load_split(args.cifar, "train", DENOISER_SPEC).images[10000:12000]  # not seen in training
    test_images = load_split(args.cifar, "test", DENOISER_SPEC).images[1000:2000]
    folder = work / "denoise"
    folder.mkdir()
    np.savez(folder / "noisy_train.npz", input=noisy_pairs(train_images, seed=2)[0])
    np.savez(folder / "noisy_test.npz", input=noisy_pairs(test_images, seed=3)[0])
    run, cost = _compress(DENOISER, folder, work / "denoiser-label-free", args, "auto", "denoiser")
    noisy, clean = noisy_pairs(load_split(args.cifar, "test", DENOISER_SPEC).images[2000:3000], seed=4)

    def psnr(model) -> float:
        return psnr_db(create_session(model).run(None, {"input": noisy})[0], clean)

    report = run.report
    result = {
        "psnr_noisy_db": psnr_db(noisy, clean),
        "psnr_original_db": psnr(DENOISER),
        "psnr_final_db": psnr(run.model),
        **_fidelity_summary(report),
        "trained_now": trained,
        **cost,
    }
    if args.time_denoiser:  # the one timing of this benchmark: run it with nothing else on the core
        paired = timed_pair(load_model(DENOISER), run.model, "mobile-cpu", n_rounds=20)
        result["speedup"] = {"median": paired.speedup, "low": paired.speedup_low, "high": paired.speedup_high}
    return result


def _fidelity_summary(report) -> dict:
    """What a label-free run's report says about fidelity and size."""
    return {
        "fidelity_after_search": report.searched.test_fidelity,
        "fidelity_final": report.final.test_fidelity,
        "task": report.task,
        "task_reason": report.task_reason,
        "metric": report.fidelity_metric,
        "macs_kept": report.final.macs / report.original.macs,
    }


def _den_line(result: dict) -> str:
    return (
        f"| denoiser (DnCNN-style, 3×16 ch) | {result['psnr_noisy_db']:.2f} dB "
        f"| {result['psnr_original_db']:.2f} dB "
        f"| {result['psnr_final_db']:.2f} dB "
        f"| {result['fidelity_after_search']:.1%} → {result['fidelity_final']:.1%} "
        f"| {result['macs_kept']:.1%} "
        f"| {_speedup_cell(result.get('speedup'))} "
        f"| {result['cpu_s'] / 60:.1f} min |"
    )


def _speedup_cell(speedup: dict | None) -> str:
    if speedup is None:
        return "not measured"
    return f"{speedup['median']:.2f}× ({speedup['low']:.2f}–{speedup['high']:.2f})"


def text_model(args, work: Path) -> dict:
    """The synthetic-topic text classifier (int64 token ids), compressed label-free from .npz files of ids."""
    from agmc_onnx.models.text_topics import main as train_main
    from agmc_onnx.models.text_topics import topic_sequences

    if args.retrain_text or not TEXT_MODEL.exists():
        train_main(["--steps", str(args.text_steps), "-o", str(TEXT_MODEL)])
    folder = work / "tokens"
    folder.mkdir()
    for split, (n, seed) in {"train": (2000, 11), "test": (1000, 12)}.items():
        ids = topic_sequences(n, seed=seed)[0]  # the topics are dropped: no label reaches compress
        np.savez(folder / f"tokens_{split}.npz", input_ids=ids, attention_mask=np.ones_like(ids))
    run, cost = _compress(TEXT_MODEL, folder, work / "text-label-free", args, "auto", "text")
    ids, topics = topic_sequences(2000, seed=13)

    def top1(model) -> float:
        logits = create_session(model).run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
        return float((logits.argmax(1) == topics).mean())

    report = run.report
    return {
        "original_top1": top1(TEXT_MODEL),
        "final_top1": top1(run.model),
        **_fidelity_summary(report),
        "scored_sequences": len(topics),
        "info": json.loads(TEXT_MODEL.with_suffix(".json").read_text()),
        **cost,
    }


def _text_line(result: dict) -> str:
    return (
        f"| text_topics (tiny BERT, int64 ids + mask) | {result['original_top1']:.2%} | {result['final_top1']:.2%} "
        f"| {result['fidelity_after_search']:.1%} → {result['fidelity_final']:.1%} | {result['macs_kept']:.1%} "
        f"| {result['cpu_s'] / 60:.1f} min |"
    )


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--models", nargs="*", default=["resnet20", "resnet56", "mobilenetv2"])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--finetune-images", type=int, default=1000)
    parser.add_argument("--reward-size", type=int, default=250)
    parser.add_argument("--score-images", type=int, default=2000, help="labelled CIFAR-10 test images scored")
    parser.add_argument("--denoiser-steps", type=int, default=1500)
    parser.add_argument("--retrain-denoiser", action="store_true")
    parser.add_argument("--skip-denoiser", action="store_true")
    parser.add_argument(
        "--denoiser-only",
        action="store_true",
        help="Only the denoiser part; the classifiers' stored results are kept.",
    )
    parser.add_argument("--time-denoiser", action="store_true", help="Also time the compressed denoiser.")
    parser.add_argument("--text-steps", type=int, default=300)
    parser.add_argument("--retrain-text", action="store_true")
    parser.add_argument(
        "--text-only",
        action="store_true",
        help="Only the text-token part (into label_free_text.json); label_free.md is then re-rendered.",
    )
    parser.add_argument("--render-only", action="store_true", help="Rewrite label_free.md from the JSON files.")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    onnxruntime.set_default_logger_severity(3)
    torch.set_num_threads(1)
    pipeline.measure_paired = _latency_not_measured  # this benchmark times nothing (see the module docstring)
    if args.text_only:
        _run_text(args)
    elif not args.render_only:
        _run_images(args)
    _render(args.out)


def _run_images(args) -> None:
    payload = {"classifiers": {}, "denoiser": None, "settings": _settings(args), "latency": "not measured"}
    if args.denoiser_only:
        stored = json.loads((args.out / "label_free.json").read_text())
        with tempfile.TemporaryDirectory() as tmp:
            stored["denoiser"] = denoiser(args, Path(tmp))
        stored["denoiser_settings"] = _settings(args)
        _save(args.out / "label_free.json", stored)
        return
    started, loads = (time.perf_counter(), time.process_time()), [os.getloadavg()[0]]
    # Results are written after every part, so a run cut short still leaves what it measured.
    steps = [("classifier", name) for name in args.models[:1]]
    steps += [] if args.skip_denoiser else [("denoiser", "denoiser")]
    steps += [("classifier", name) for name in args.models[1:]]
    with tempfile.TemporaryDirectory() as tmp:
        unlabelled = unlabelled_demo(args, Path(tmp)) if args.models else None
        for kind, name in steps:
            if kind == "classifier":
                payload["classifiers"][name] = classifier(name, args, Path(tmp), unlabelled)
            else:
                payload["denoiser"] = denoiser(args, Path(tmp))
            loads.append(os.getloadavg()[0])
            payload["totals"] = {"wall_s": time.perf_counter() - started[0], "cpu_s": time.process_time() - started[1]}
            payload["load_average_1min"] = loads
            _save(args.out / "label_free.json", payload)
            _render(args.out)


def _run_text(args) -> None:
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        result = text_model(args, Path(tmp))
    payload = {"text": result, "settings": _settings(args), "load_average_1min": [*loads, os.getloadavg()[0]]}
    _save(args.out / "label_free_text.json", payload)


def _settings(args) -> dict:
    return {**vars(args), "cifar": str(args.cifar), "out": str(args.out)}


def _save(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))


def _protocol(settings: dict, totals: dict, loads: list[float]) -> list[str]:
    return [
        f"Protocol (reduced for a shared 2-core CPU): `flops = 0.5`, `round_to = 8`, agmc policy, "
        f"{settings['episodes']} search episodes, {settings['reward_size']} reward inputs, "
        f"{settings['finetune_epochs']} fine-tuning epoch(s) on {settings['finetune_images']} of the remaining "
        f"training inputs, reconstruction before fine-tuning (the default), seed {settings['seed']}. Classifiers: "
        "the demo data (2,000 train / 1,000 test CIFAR-10 images). The labelled run reads the demo archives "
        "(reward: top-1; fine-tuning: cross-entropy + distillation). The label-free run reads the same images "
        "shuffled and renamed by number in flat archives (reward: top-1 agreement with the original; fine-tuning: "
        "pure distillation on all outputs), so no label or class name reaches it. Both compressed models are then "
        f"scored on the same {settings['score_images']} labelled CIFAR-10 test images (a seeded, class-balanced "
        "subset of the 10,000; about a tenth of them may also be among the demo's 1,000 test images, which the "
        "labelled run used only to report, never to train or search).",
        "",
        "**The classifiers' latency was not measured** (compress's paired timing step was replaced by a "
        "not-measured placeholder, so this heavy run could share the machine with timing benchmarks); only the "
        "denoiser is timed, separately (`--time-denoiser`). The columns give "
        f"CPU time, not wall time. Image part: {totals['cpu_s'] / 60:.1f} CPU min in {totals['wall_s'] / 60:.1f} "
        "wall min under `nice -n 19`; 1-min load average at the start and after each part: "
        f"{', '.join(f'{v:.1f}' for v in loads)}. Each comparison is one seed: a difference of a point or two "
        "between runs is within the search's seed noise at this episode count.",
        "",
    ]


def _render(out: Path) -> None:
    """label_free.md from label_free.json (and label_free_text.json when the text part has run)."""
    images = json.loads((out / "label_free.json").read_text())
    text_path = out / "label_free_text.json"
    text = json.loads(text_path.read_text()) if text_path.exists() else None
    settings = images["settings"]
    lines = [
        "# compress without labels",
        "",
        "Written by `benchmarks/label_free.py`.",
        "",
        *_protocol(settings, images["totals"], images["load_average_1min"]),
        "| model | original | labelled run | label-free run | label-free − labelled (points) "
        "| test fidelity labelled / label-free | MACs kept | CPU labelled / label-free |",
        "|---|---|---|---|---|---|---|---|",
        *(_class_line(name, row) for name, row in images["classifiers"].items()),
        "",
    ]
    missing = [name for name in settings["models"] if name not in images["classifiers"]]
    if missing:
        lines += [f"Not measured (the run was stopped before reaching them): {', '.join(missing)}.", ""]
    if images["denoiser"]:
        lines += _denoiser_section(settings, images["denoiser"])
    lines += _text_section(text)
    (out / "label_free.md").write_text("\n".join(lines))
    print("\n".join(lines), flush=True)


def _denoiser_section(settings: dict, result: dict) -> list[str]:
    trained = result.get("trained_now") or {}
    return [
        "## A model that is not a classifier: a denoising CNN",
        "",
        f"`models/denoiser.py` trains it for {trained.get('steps', settings['denoiser_steps'])} batches of 32 on "
        "10,000 CIFAR-10 training images with Gaussian noise σ = 0.1 (on [0, 1]); "
        "`models/zoo/cifar10_denoiser.json` records the run. It is compressed label-free (task chosen "
        f"automatically: {Path(result['task_reason']).name}; its output is an image, so fidelity is "
        f"{result['metric']}) from "
        "`.npz` files of noisy inputs keyed by the input name: 2,000 other training images, 1,000 test images for "
        "the run's test split. PSNR is measured on 1,000 further test images. The speed-up (with "
        "`--time-denoiser`) is onnxruntime's paired A-B-B-A timing of the compressed against the original "
        "model, 1 thread, batch 1, with the benchmark alone on one core.",
        "",
        "| model | PSNR noisy input | PSNR original | PSNR compressed | test fidelity after search → fine-tuned "
        "| MACs kept | speed-up, mobile-cpu (95 % CI) | CPU |",
        "|---|---|---|---|---|---|---|---|",
        _den_line(result),
        "",
    ]


def _text_section(text: dict | None) -> list[str]:
    if text is None:
        return ["## Text-token model", "", "Not measured in this run.", ""]
    result, settings = text["text"], text["settings"]
    info = result["info"]
    return [
        "## Text-token model (int64 inputs)",
        "",
        f"`models/text_topics.py` trains the corpus's tiny BERT (2 layers, width 64, 4 heads) for {info['steps']} "
        f"batches of {info['batch_size']} on a {info['task']}; inputs are int64 token ids and an "
        "attention mask. It is compressed label-free (task chosen automatically: "
        f"{Path(result['task_reason']).name}) from `.npz` files of token ids keyed by input name (2,000 train, "
        "1,000 test "
        f"sequences; the topics are not in the files), with the same settings as above ({settings['episodes']} "
        f"episodes, {settings['finetune_epochs']} distillation epoch(s)). Top-1 on the topic labels is measured "
        f"afterwards on {result['scored_sequences']} further sequences. Only the attention heads and MLP widths "
        "prune (the residual stream stays at full width), so 50 % of the MACs is a deep cut for this model. "
        f"1-min load average before and after: {', '.join(f'{v:.1f}' for v in text['load_average_1min'])}.",
        "",
        "| model | topic top-1 original | topic top-1 compressed | fidelity after search → fine-tuned | MACs kept "
        "| CPU |",
        "|---|---|---|---|---|---|",
        _text_line(result),
        "",
    ]


if __name__ == "__main__":
    main()
