"""Engine benchmark: analysis and pruning of every corpus architecture at keep 0.5, and the trained CIFAR-10
models pruned at keep 0.5 (channels rounded to 8) with their test accuracy before any fine-tuning.

    .venv/bin/python benchmarks/engine_corpus.py [--data ../shared/data/cifar10] [--out benchmarks/results]
    .venv/bin/python benchmarks/engine_corpus.py --extended   # timm, transformers, old opsets, external data

Each corpus entry runs in the variants it lists (BatchNormalization kept, and fused for the original ones).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import onnxruntime

from agmc_onnx.analysis import analyze_model
from agmc_onnx.data.preprocessing import spec_from_model
from agmc_onnx.data.splits import load_split
from agmc_onnx.evaluate import evaluate_accuracy
from agmc_onnx.graph.probe import PROBE_LENGTH
from agmc_onnx.graph.versions import converted_from_opset
from agmc_onnx.groups.macs_model import MacsModel
from agmc_onnx.io import load_model
from agmc_onnx.models.corpus import CORPUS, export_corpus_model
from agmc_onnx.models.zoo import zoo_model_path
from agmc_onnx.plan import uniform_plan
from agmc_onnx.prune import prune_model
from agmc_onnx.validate import validate_pruned

ROOT = Path(__file__).resolve().parent.parent
# The entries added for any-model support, plus the torchvision ShuffleNet V2 the goals name.
EXTENDED = [name for name in CORPUS if CORPUS[name].extended] + ["shufflenet_v2_x0_5"]


def corpus_row(name: str, fused: bool, cache_dir: Path) -> dict:
    model = load_model(export_corpus_model(name, fused, cache_dir=cache_dir))
    entry = CORPUS[name]
    analysis = analyze_model(model)
    start = time.perf_counter()
    result = prune_model(model, uniform_plan(analysis.groups, 0.5), analysis=analysis)
    prune_s = time.perf_counter() - start
    report = validate_pruned(model, analysis, result.selection, result.model)
    kept = {g.id: len(result.selection.keep_units.get(g.id, range(g.n_units))) / g.n_units
            for g in analysis.prunable_groups}
    return {
        "model": name,
        "variant": _variant_label(entry, fused),
        "input": f"ids×{PROBE_LENGTH}" if entry.kind == "text" else entry.input_size,
        "converted_from_opset": converted_from_opset(model),
        "nodes": len(analysis.layers),
        "groups": len(analysis.groups),
        "prunable_groups": len(analysis.prunable_groups),
        "prunable_macs_share": analysis.prunable_macs / analysis.total_macs,
        "not_prunable": [f"{g.name}: {g.status}" for g in analysis.groups if not g.prunable],
        "analysis_s": analysis.seconds,
        "prune_s": prune_s,
        "macs": [result.before.macs, result.after.macs],
        # what the search's budget predicts for this selection (the MACs model, ranked by L1 as the plan is)
        "macs_predicted": MacsModel.from_analysis(analysis).macs(kept),
        "params": [result.before.params, result.after.params],
        "file_bytes": [result.before.file_bytes, result.after.file_bytes],
        "oracle_rel_diff": report.max_abs_diff / max(report.output_scale, 1e-12),
        "oracle_passed": report.passed,
    }


def _variant_label(entry, fused: bool) -> str:
    label = "bn-fused" if fused else "as exported"
    if entry.opset != 17:
        label += f", opset {entry.opset}"
    if entry.external_data:
        label += ", external data"
    return label


def trained_row(name: str, data: Path) -> dict:
    model = load_model(zoo_model_path(name))
    analysis = analyze_model(model)
    result = prune_model(model, uniform_plan(analysis.groups, 0.5, round_to=8), analysis=analysis)
    report = validate_pruned(model, analysis, result.selection, result.model)
    test = load_split(data, "test", spec_from_model(model))
    before = evaluate_accuracy(model, test)
    after = evaluate_accuracy(result.model, test)
    return {
        "model": name,
        "macs": [result.before.macs, result.after.macs],
        "params": [result.before.params, result.after.params],
        "test_top1": [before.top1, after.top1],
        "n_test_images": after.n_images,
        "oracle_passed": report.passed,
    }


def _m(value: float) -> str:
    return f"{value / 1e6:.1f}M"


def render(rows: list[dict], trained: list[dict], machine: dict) -> str:
    lines = [
        "# Engine benchmark: channel groups and pruning at keep 0.5",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; onnxruntime {machine['onnxruntime']}. "
        "Times are wall seconds on a shared, loaded machine, run at the lowest CPU priority (indicative only; "
        "this is not a latency benchmark).",
        "Corpus models have random weights (torchvision and timm architectures, tiny transformers encoders with "
        "int64 token ids and a symbolic sequence length, a ShuffleNet V1 and this project's CIFAR networks), "
        "exported with the TorchScript exporter at opset 17 unless the variant names another opset (converted "
        "on load), BatchNormalization kept or fused into Conv. "
        "Every group keeps half its channels (importance L1), and every pruned model passes the ONNX full check, "
        "loads in onnxruntime and matches the masked original (oracle, relative max |diff| shown). "
        "MACs model error: what the search's budget (the MACs model) predicts for the same selection against "
        "the MACs counted on the pruned model; exact means within half a MAC.",
        "",
        "| model | variant | input | nodes | groups (prunable) | prunable MACs | analysis s | prune s "
        "| MACs before → after | MACs model error | params before → after | file MB before → after "
        "| oracle (rel. diff) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['variant']} | FAILED: {r['error']} ||||||||||||")
            continue
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['input']} | {r['nodes']} | {r['groups']} ({r['prunable_groups']}) "
            f"| {r['prunable_macs_share']:.1%} | {r['analysis_s']:.2f} | {r['prune_s']:.2f} "
            f"| {_m(r['macs'][0])} → {_m(r['macs'][1])} | {_model_error(r)} "
            f"| {_m(r['params'][0])} → {_m(r['params'][1])} "
            f"| {r['file_bytes'][0] / 1e6:.1f} → {r['file_bytes'][1] / 1e6:.1f} "
            f"| {'passed' if r['oracle_passed'] else 'FAILED'} ({r['oracle_rel_diff']:.1e}) |"
        )
    if not trained:
        return "\n".join(lines + goal_lines(rows)) + "\n"
    lines += [
        "",
        "## Trained CIFAR-10 models, keep 0.5 with channels rounded to 8, no fine-tuning",
        "",
        "Test top-1 on the full CIFAR-10 test set (JPEG copy), through onnxruntime. Without fine-tuning, "
        "accuracy collapses at this ratio (this is the starting point that search and fine-tuning improve on).",
        "",
        "| model | MACs before → after | params before → after | test top-1 before → after | oracle |",
        "|---|---|---|---|---|",
    ]
    for r in trained:
        lines.append(
            f"| {r['model']} | {_m(r['macs'][0])} → {_m(r['macs'][1])} | {_m(r['params'][0])} → {_m(r['params'][1])} "
            f"| {r['test_top1'][0]:.2%} → {r['test_top1'][1]:.2%} | {'passed' if r['oracle_passed'] else 'FAILED'} |"
        )
    return "\n".join(lines) + "\n"


def _model_error(row: dict) -> str:
    """The MACs model's prediction against the MACs counted on the pruned model."""
    difference = row["macs_predicted"] - row["macs"][1]
    return "exact" if abs(difference) < 0.5 else f"{difference / row['macs'][1]:+.2%}"


def goal_lines(rows: list[dict]) -> list[str]:
    """The any-model goals, stated against this run's rows."""
    ok = [r for r in rows if "error" not in r]
    valid = [r for r in ok if r["oracle_passed"] and r["macs"][1] < r["macs"][0]]
    lines = [
        "",
        "## Goals",
        "",
        f"- pruned validly at keep 0.5 (fewer MACs, oracle passed): {len(valid)} of {len(rows)} rows "
        f"({len(valid) / max(len(rows), 1):.0%}; goal 100 %)",
    ]
    exact = [r for r in ok if _model_error(r) == "exact"]
    lines.append(
        f"- MACs model prediction equal to the MACs counted on the pruned model: {len(exact)} of {len(ok)} rows"
    )
    for r in (r for r in ok if r["model"].startswith(("timm_vit", "timm_deit", "text_bert"))):
        lines.append(f"- prunable MACs of {r['model']}: {r['prunable_macs_share']:.1%} (goal ≥ 85 %)")
    for r in (r for r in ok if r["model"].startswith("shufflenet_v2")):
        lines.append(
            f"- prunable groups of {r['model']} ({r['variant']}): {r['prunable_groups']} of {r['groups']} = "
            f"{r['prunable_groups'] / r['groups']:.1%} (goal ≥ 95 %); not prunable: "
            + "; ".join(r.get("not_prunable", [])[:3])
        )
    return lines


def machine_info() -> dict:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return {"cpu": cpu, "cores": os.cpu_count(), "onnxruntime": onnxruntime.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache" / "corpus")
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument(
        "--extended",
        action="store_true",
        help="the entries added for any-model support (timm, transformers, opsets 9/10, external data, "
        "ShuffleNet V1/V2), written to engine_corpus_extended.*, without the trained-model rows",
    )
    args = parser.parse_args()
    onnxruntime.set_default_logger_severity(3)
    names = args.models or (EXTENDED if args.extended else [n for n in CORPUS if n not in EXTENDED])
    rows = []
    for name in names:
        for variant in CORPUS[name].variants:
            fused = variant == "fused"
            try:
                rows.append(corpus_row(name, fused, args.cache_dir))
            except Exception as exc:  # a benchmark reports failures in its table instead of stopping
                rows.append({"model": name, "variant": _variant_label(CORPUS[name], fused), "error": str(exc)[:200]})
            print(json.dumps(rows[-1]), flush=True)
    trained = []
    for name in () if args.extended else ("resnet20", "resnet56", "mobilenetv2"):
        trained.append(trained_row(name, args.data))
        print(json.dumps(trained[-1]), flush=True)
    machine = machine_info()
    stem = "engine_corpus_extended" if args.extended else "engine_corpus"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(
        json.dumps({"machine": machine, "corpus": rows, "trained": trained}, indent=2)
    )
    (args.out / f"{stem}.md").write_text(render(rows, trained, machine))
    print(render(rows, trained, machine))


if __name__ == "__main__":
    main()
