"""The whole pipeline (search → prune → fine-tune → evaluate → paired latency) on the shared ResNet-56 and
MobileNetV2 at 50 % MACs, with CPU-sized budgets. Each run's report, plots and episode log land in
benchmarks/results/compress/<model>/, and a summary table in benchmarks/results/compress_zoo.md.

    .venv/bin/python benchmarks/compress_zoo.py [--episodes 40] [--finetune-epochs 2] [--finetune-images 10000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import onnxruntime
import torch

from agmc_onnx.cli.progress import ProgressRenderer
from agmc_onnx.compress.config import CompressConfig
from agmc_onnx.compress.outputs import write_outputs
from agmc_onnx.compress.pipeline import run_compress
from agmc_onnx.models.zoo import zoo_model_path
from agmc_onnx.search.agent import scaled_warmup

ROOT = Path(__file__).resolve().parent.parent


def _row(name: str, report, wall_s: float) -> str:
    o, s, f = report.original, report.searched, report.final
    return (
        f"| {name} | {o.test_top1:.2%} | {s.test_top1:.2%} | {f.test_top1:.2%} "
        f"| {o.macs / 1e6:.1f}M → {f.macs / 1e6:.1f}M ({f.macs / o.macs:.1%}) "
        f"| {o.params / 1e6:.3f}M → {f.params / 1e6:.3f}M | {o.file_bytes / 1e6:.2f} → {f.file_bytes / 1e6:.2f} MB "
        f"| {report.speedup:.2f}× [{report.speedup_low:.2f}, {report.speedup_high:.2f}] | {wall_s / 60:.1f} min |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--models", nargs="*", default=["resnet56", "mobilenetv2"])
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--finetune-images", type=int, default=10000)
    args = parser.parse_args()
    onnxruntime.set_default_logger_severity(3)
    torch.set_num_threads(1)
    rows, reports = [], {}
    for name in args.models:
        config = CompressConfig(
            target="mobile-cpu",
            flops=0.5,
            data=str(args.data),
            episodes=args.episodes,
            finetune_epochs=args.finetune_epochs,
            finetune_images=args.finetune_images,
            round_to=8,
        )
        out_dir = args.out / "compress" / name
        started = time.perf_counter()
        run = run_compress(
            zoo_model_path(name),
            config,
            out_dir,
            progress=ProgressRenderer(sys.stdout, tty=False, stage_prefix=True),
        )
        write_outputs(run, out_dir)
        wall_s = time.perf_counter() - started
        rows.append(_row(name, run.report, wall_s))
        reports[name] = {"wall_s": wall_s, "report": json.loads(run.report.to_json())}
    lines = [
        "# compress on the shared CIFAR-10 models at 50 % MACs (CPU budgets)",
        "",
        f"Settings: `--flops 0.5 --target mobile-cpu --round-to 8`, policy agmc, {args.episodes} search episodes "
        f"({scaled_warmup(args.episodes)} of them random warm-up) "
        f"(reward: 1,000 held-out train images, BatchNormalization re-estimated), fine-tuning "
        f"{args.finetune_epochs} epoch(s) on {args.finetune_images} training images with distillation from the "
        "original, 1 torch thread, 2-core Xeon. Test top-1 on the full 10,000-image CIFAR-10 test set (JPEG copy). "
        "Speed-up: paired, interleaved onnxruntime runs on mobile-cpu (1 thread, batch 1), median ratio with its "
        "95 % bootstrap interval. Full reports: `compress/<model>/report.md`.",
        "",
        "| model | original | after search | after fine-tune | MACs | params | file | mobile-cpu speed-up | wall |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    (args.out / "compress_zoo.md").write_text("\n".join(lines))
    (args.out / "compress_zoo.json").write_text(json.dumps(reports, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
