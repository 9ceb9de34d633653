"""How far one paired fp32 → INT8 timing moves between processes, and what makes it move.

    python benchmarks/int8_timing.py --data ../shared/data/cifar10 --processes 6

The fp32 ResNet-56 original is timed paired (``measure_paired``, A-B-B-A) against three INT8 models, each timing
in a fresh process, ``--processes`` times per condition:

- *INT8 only*: the original quantized (QOperator, calibrated on 256 class-balanced training images);
- *pruned, check form*: the plan ``compress --latency 0.4 --quantize int8`` shipped
  (``benchmarks/results/compress_latency/resnet56_latency0.4_int8_1epoch``), pruned and quantized as the
  latency check quantizes it (one random input for calibration);
- *pruned, shipped form*: the same pruned model quantized as ``compress`` ships it (training images).

Conditions: the timing's rounds in one pair of sessions (``sessions=1``) or spread over fresh pairs
(``--sessions``), and the timing made after some seconds of torch training in the same process (what
``compress`` does before its final timing). Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "benchmarks" / "results"
PLAN_REPORT = RESULTS / "compress_latency" / "resnet56_latency0.4_int8_1epoch" / "report.json"
VARIANTS = ("int8_only", "pruned_check_form", "pruned_shipped_form")
LABELS = {
    "int8_only": "INT8 only",
    "pruned_check_form": "pruned, check form (random-input calibration)",
    "pruned_shipped_form": "pruned, shipped form (training-image calibration)",
}


def build(data: Path, folder: Path) -> None:
    """The fp32 original and the three INT8 models, written to ``folder``."""
    from agmc_onnx.analysis import analyze_model
    from agmc_onnx.data import load_splits, spec_from_model
    from agmc_onnx.io import load_model, save_model
    from agmc_onnx.layer_latency import shipping_form
    from agmc_onnx.plan import PruningPlan
    from agmc_onnx.prune import prune_model
    from agmc_onnx.quantize import QuantizeConfig, calibration_inputs, quantize_model

    model = load_model(SHARED / "models" / "cifar10_resnet56.onnx")
    spec = spec_from_model(model)
    train = load_splits(data, spec, reward_size=1, seed=0).finetune
    calibration = calibration_inputs(train, spec, QuantizeConfig())
    report = json.loads(PLAN_REPORT.read_text())
    plan = PruningPlan({g["id"]: g["keep_ratio"] for g in report["groups"]})
    analysis = analyze_model(model)
    pruned = prune_model(model, plan, analysis=analysis).model
    save_model(model, folder / "fp32.onnx")
    save_model(quantize_model(model, calibration, "qoperator").model, folder / "int8_only.onnx")
    save_model(shipping_form(analysis, "int8-qoperator")(pruned), folder / "pruned_check_form.onnx")
    save_model(quantize_model(pruned, calibration, "qoperator").model, folder / "pruned_shipped_form.onnx")


def train_torch(seconds: float) -> None:
    """Torch training on random images for ``seconds``, with torch's default threads (as fine-tuning runs)."""
    import torch

    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.BatchNorm2d(64), torch.nn.ReLU(),
        torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(64, 10),
    )
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    images, labels = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(images), labels).backward()
        optimizer.step()


def child(folder: Path, variant: str, sessions: int, train_seconds: float, rounds: int) -> None:
    """One timing in this (fresh) process; prints its JSON."""
    from agmc_onnx.cost import measure_paired

    if train_seconds:
        train_torch(train_seconds)
    paired = measure_paired(folder / "fp32.onnx", folder / f"{variant}.onnx", "mobile-cpu", n_rounds=rounds,
                            sessions=sessions)
    print(json.dumps({"speedup": paired.speedup, "low": paired.speedup_low, "high": paired.speedup_high,
                      "fp32_ms": paired.a.median_ms, "int8_ms": paired.b.median_ms}))


def conditions(args) -> list[tuple[int, float]]:
    return [(s, 0.0) for s in args.sessions] + [(1, t) for t in args.train_seconds]


def condition_label(sessions: int, train_seconds: float) -> str:
    if train_seconds:
        return f"after {train_seconds:.0f} s of torch training, 1 session pair"
    return "1 session pair" if sessions == 1 else f"{sessions} fresh session pairs"


def measure(args) -> dict:
    rows = []
    with tempfile.TemporaryDirectory(prefix="int8-timing-") as name:
        folder = Path(name)
        build(args.data, folder)
        # Processes interleave variants and conditions, so that slow drift of the machine hits all alike.
        for index in range(args.processes):
            for variant in VARIANTS:
                for sessions, train_seconds in conditions(args):
                    command = [sys.executable, __file__, "child", "--folder", str(folder), "--variant", variant,
                               "--sessions-one", str(sessions), "--train-one", str(train_seconds),
                               "--rounds", str(args.rounds)]
                    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                    row = {"process": index, "variant": variant, "sessions": sessions,
                           "train_seconds": train_seconds, **json.loads(out.strip().splitlines()[-1])}
                    rows.append(row)
                    label = condition_label(sessions, train_seconds)
                    print(f"[{time.strftime('%H:%M:%S')}] {index} {variant} {label}: {row['speedup']:.3f}x"
                          f" ({row['low']:.3f}-{row['high']:.3f})", flush=True)
    return {"rows": rows, "processes": args.processes, "rounds": args.rounds}


def render(result: dict) -> str:
    lines = [
        "# INT8 timing: how far one paired timing moves between processes\n",
        f"Command: `python benchmarks/int8_timing.py --processes {result['processes']} --rounds {result['rounds']}"
        f"{result.get('extra', '')}`. Machine: {result.get('machine', '')}.\n",
        "The fp32 ResNet-56 original timed paired (A-B-B-A, mobile-cpu: 1 thread, batch 1) against each INT8 "
        "model; every timing in a fresh process, the processes interleaved over variants and conditions. "
        "*spread*: (max − min) / median of the processes' speed-ups; *CI*: the median over processes of one "
        "timing's own 95 % CI width relative to its speed-up (what one timing believes its precision is).\n",
        "| INT8 model | condition | processes | speed-up median | min – max | spread | one timing's CI |",
        "|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for row in result["rows"]:
        groups.setdefault((row["variant"], row["sessions"], row["train_seconds"]), []).append(row)
    for (variant, sessions, train_seconds), rows in groups.items():
        speedups = [r["speedup"] for r in rows]
        median = statistics.median(speedups)
        ci = statistics.median((r["high"] - r["low"]) / r["speedup"] for r in rows)
        lines.append(
            f"| {LABELS[variant]} | {condition_label(sessions, train_seconds)} | {len(rows)} | {median:.2f}× | "
            f"{min(speedups):.2f}–{max(speedups):.2f}× | {100 * (max(speedups) - min(speedups)) / median:.1f} % | "
            f"{100 * ci:.1f} % |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="run", choices=["run", "child", "render"])
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "cifar10")
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=20, help="A-B-B-A rounds per timing (measure_paired's default)")
    parser.add_argument("--sessions", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4])
    parser.add_argument("--train-seconds", type=lambda s: [float(x) for x in s.split(",") if x], default=[30.0])
    parser.add_argument("--machine", default="")
    parser.add_argument("-o", "--out", type=Path, default=RESULTS / "int8_timing")
    # child-only
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--variant", choices=VARIANTS)
    parser.add_argument("--sessions-one", type=int, default=1)
    parser.add_argument("--train-one", type=float, default=0.0)
    args = parser.parse_args()
    if args.command == "child":
        child(args.folder, args.variant, args.sessions_one, args.train_one, args.rounds)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    if args.command == "run":
        result = measure(args)
        result["machine"] = args.machine
        result["extra"] = (f" --sessions {','.join(map(str, args.sessions))}"
                           f" --train-seconds {','.join(f'{t:g}' for t in args.train_seconds)}")
        (args.out / "int8_timing.json").write_text(json.dumps(result, indent=1))
    result = json.loads((args.out / "int8_timing.json").read_text())
    (args.out / "int8_timing.md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
