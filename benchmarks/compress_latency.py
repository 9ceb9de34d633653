"""`compress` with a latency budget, end to end and timed: the latency check's measurements against the
paired timing of the model that ships, with its accuracy.

    python benchmarks/compress_latency.py --data ../shared/data/cifar10 --work /tmp/compress_latency
    python benchmarks/compress_latency.py --render-only

Each run is one `agmc-onnx compress` command (the runs below); its report.json / report.md are copied to
``benchmarks/results/compress_latency/<run>/`` and a table of all runs is written beside them. A run whose
report is already there is not run again. Run it with nothing else on the machine: the latency check and the
final paired timing are measurements.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_MODELS = ROOT.parent / "shared" / "models"
RESULTS = ROOT / "benchmarks" / "results" / "compress_latency"
RUNS = {
    "resnet56_latency0.5": ("resnet56", ["--latency", "0.5", "--episodes", "40", "--finetune-epochs", "0"]),
    "mobilenetv2_latency0.5": ("mobilenetv2", ["--latency", "0.5", "--episodes", "40", "--finetune-epochs", "0"]),
    "mobilenetv2_latency0.4_int8": (
        "mobilenetv2", ["--latency", "0.4", "--quantize", "int8", "--episodes", "40", "--finetune-epochs", "0"]
    ),
    "resnet56_latency0.4_int8_1epoch": (
        "resnet56", ["--latency", "0.4", "--quantize", "int8", "--episodes", "40", "--finetune-epochs", "1"]
    ),
    # run with --tag -2epochs: the INT8-only reference is timed again beside it
    "resnet56_latency0.39_int8": (
        "resnet56", ["--latency", "0.39", "--quantize", "int8", "--episodes", "40", "--finetune-epochs", "2"]
    ),
}


def _cli(*args: str) -> list[str]:
    """An ``agmc-onnx`` command line of this environment's install."""
    return [str(Path(sys.executable).parent / "agmc-onnx"), *args]


def run(name: str, model: str, options: list[str], data: Path, work: Path) -> None:
    """One compress command; ``name`` is the result folder (a run's key, with a repeat's tag)."""
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    model_path = str(SHARED_MODELS / f"cifar10_{model}.onnx")
    command = _cli("compress", model_path, "--data", str(data), *options, "-o", str(out))
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode not in (0, 3, 4):  # 3, 4: a gate failed, the report is written
        raise SystemExit(f"{name}: compress exited {finished.returncode}\n{finished.stderr[-2000:]}")
    target = RESULTS / name
    target.mkdir(parents=True, exist_ok=True)
    for file in ("report.json", "report.md", "latency.png"):
        shutil.copy(out / file, target / file)
    (target / "command.json").write_text(json.dumps({
        "command": "agmc-onnx " + " ".join(command[1:]), "exit_code": finished.returncode,
        "wall_s": time.perf_counter() - started,
    }, indent=1))


def int8_only(model: str, data: Path, work: Path, tag: str = "") -> None:
    """The reference a deployer has without pruning: onnxruntime's static INT8 of the original."""
    command = _cli("quantize", str(SHARED_MODELS / f"cifar10_{model}.onnx"), "--data", str(data),
                   "-o", str(work / f"{model}_int8.onnx"))
    finished = subprocess.run(command, capture_output=True, text=True, check=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = "$ agmc-onnx " + " ".join(command[1:]) + "\n" + finished.stdout
    (RESULTS / f"int8_only_{model}{tag}.txt").write_text(text)


def render() -> str:
    lines = [
        "# `compress --latency`, end to end",
        "",
        "Each row one `agmc-onnx compress` run on the shared CIFAR-10 model and data (command.json in its folder), "
        "on the 2-core AMD EPYC with nothing else running. *checks*: the latency check's timings of the plan as "
        "it ships (predicted → measured fraction of the original's latency; more than 5 % off moves the plan). "
        "*shipped*: the final paired timing of the model written, against the original (95 % CI of the "
        "speed-up). Test top-1 on the 10,000 test images.",
        "",
        "| run | budget | checks (predicted → measured) | shipped fraction | speed-up (95 % CI) | MACs kept | "
        "test top-1 original → shipped | gate | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for folder in sorted(p for p in RESULTS.iterdir() if (p / "report.json").exists()):
        report = json.loads((folder / "report.json").read_text())
        meta = json.loads((folder / "command.json").read_text())
        check = report.get("latency_check") or {"checks": []}
        checks = ", ".join(f"{c['predicted_fraction']:.3f} → {c['measured_fraction']:.3f}" for c in check["checks"])
        shipped = report["quantized"] or report["final"]  # the INT8 model's figures when it ships
        budget = f"{report['budget_keep_fraction']:.2f}" + (" + INT8" if report.get("quantized") else "")
        lines.append(
            f"| {folder.name} | {budget} | {checks or '—'} | {report['achieved_keep_fraction']:.3f} | "
            f"{report['speedup']:.2f}× ({report['speedup_low']:.2f}–{report['speedup_high']:.2f}) | "
            f"{report['final']['macs'] / report['original']['macs']:.1%} | "
            f"{report['original']['test_top1']:.2%} → {shipped['test_top1']:.2%} | "
            f"{'passed' if report['gate'].get('passed') else 'failed'} | {meta['wall_s']:.0f} |"
        )
    lines += ["", "INT8 only (`agmc-onnx quantize` of the original, same machine; a tag after the model name marks "
              "the repeat run beside the compress run of the same tag):", ""]
    lines += [f"- {path.stem.removeprefix('int8_only_')}: " + "; ".join(
        line.strip() for line in path.read_text().splitlines()[1:] if line.startswith(("test top-1", "speed-up")))
        for path in sorted(RESULTS.glob("int8_only_*.txt"))]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10")
    parser.add_argument("--work", type=Path, default=Path("/tmp/compress_latency"))
    parser.add_argument("--runs", nargs="*", default=list(RUNS))
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--tag", default="", help="a repeat: results go to <run><tag> and int8_only_<model><tag>")
    args = parser.parse_args()
    if not args.render_only:
        for model in sorted({RUNS[name][0] for name in args.runs}):
            if not (RESULTS / f"int8_only_{model}{args.tag}.txt").exists():
                int8_only(model, args.data, args.work, args.tag)
        for name in args.runs:
            if not (RESULTS / f"{name}{args.tag}" / "report.json").exists():
                model, options = RUNS[name]
                run(f"{name}{args.tag}", model, options, args.data, args.work)
    (RESULTS / "README.md").write_text(render())
    print(render())


if __name__ == "__main__":
    main()
