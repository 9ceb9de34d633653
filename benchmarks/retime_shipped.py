"""Time a `compress` output again: is a gap between its latency check and its final timing the model or the
machine?

    python benchmarks/retime_shipped.py /tmp/compress_latency/mobilenetv2_latency0.5-grid \
        ../shared/models/cifar10_mobilenetv2.onnx --repeats 6

In one process, ``--repeats`` times each: the original against the shipped ``model.onnx`` (rounds in one pair of
sessions, then spread over 4 fresh pairs), and the plan the check timed (the original pruned with the checked
keep ratios, no reconstruction) against the shipped model. Writes ``retime.md`` into the run's result folder
(``benchmarks/results/compress_latency/<run>/``). Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "compress_latency"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a compress output folder (with .work/checked.json)")
    parser.add_argument("original", type=Path)
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()

    from agmc_onnx.analysis import analyze_model
    from agmc_onnx.cost import measure_paired
    from agmc_onnx.io import load_model
    from agmc_onnx.plan import PruningPlan
    from agmc_onnx.prune import prune_model

    original = load_model(args.original)
    shipped = load_model(args.run / "model.onnx")
    checked = json.loads((args.run / ".work" / "checked.json").read_text())
    report = json.loads((args.run / "report.json").read_text())
    if report.get("quantized"):
        raise SystemExit("an INT8 run: the checked plan would need the same quantization; not supported here")
    plan = prune_model(original, PruningPlan(checked["keep_ratios"]), analysis=analyze_model(original)).model
    pairs = {
        "original vs shipped, 1 session pair": (original, shipped, 1),
        "original vs shipped, 4 fresh session pairs": (original, shipped, 4),
        "checked plan (pruned, not reconstructed) vs shipped": (plan, shipped, 1),
    }
    speedups: dict[str, list[float]] = {name: [] for name in pairs}
    for _ in range(args.repeats):  # interleaved, so that drift hits every pair alike
        for name, (a, b, sessions) in pairs.items():
            speedups[name].append(measure_paired(a, b, report["target"], sessions=sessions).speedup)
            print(f"[{time.strftime('%H:%M:%S')}] {name}: {speedups[name][-1]:.3f}x", flush=True)
    check = checked["measured_fraction"]
    lines = [
        f"# `{args.run.name}` timed again",
        "",
        f"Command: `python benchmarks/retime_shipped.py {args.run} {args.original} --repeats {args.repeats}`, nothing "
        f"else running, {time.strftime('%Y-%m-%d %H:%M')}. In the compress run: the check measured the plan at "
        f"{check:.3f} of the original's latency, the final timing the shipped model at "
        f"{report['achieved_keep_fraction']:.3f} ({report['speedup']:.2f}×).",
        "",
        "| pair | repeats | speed-up (each) | median | fraction of the original (median) |",
        "|---|---|---|---|---|",
    ]
    for name, values in speedups.items():
        median = statistics.median(values)
        fraction = f"{1 / median:.3f}" if name.startswith("original") else "—"
        lines.append(f"| {name} | {len(values)} | {', '.join(f'{v:.3f}' for v in values)} | {median:.3f}× | "
                     f"{fraction} |")
    folder = RESULTS / args.run.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "retime.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
