"""Predictor accuracy of the per-layer latency tables, fp32 and INT8, on random plans of the zoo models.

    flock /tmp/agmc-heavy.lock python benchmarks/speed.py --plans 10 -o benchmarks/results

For each model and precision: build the tables (cached under the output folder), draw random plans
whose every group sits on one of its staircase's fast steps (the search's action space), prune (and
quantize, for INT8), measure the median latency on the target and compare with the prediction.
Writes ``speed.json`` and ``speed.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import time
from pathlib import Path

import numpy as np
from measure_zoo import machine  # benchmarks/ is on sys.path when run as a script
from speed_budgets import budget_plans, checked
from speed_compare import carry_over, compare, kept_predictor
from speed_report import write_markdown

from agmc_onnx.analysis import analyze_model
from agmc_onnx.cost import measure_paired
from agmc_onnx.importance import channel_scores
from agmc_onnx.io import load_model
from agmc_onnx.layer_latency import TableConfig, build_latency_model
from agmc_onnx.models.zoo import zoo_model_path
from agmc_onnx.plan import PruningPlan, select_channels
from agmc_onnx.prune import apply_selection
from agmc_onnx.quantize import quantize_model
from agmc_onnx.search.run import SearchConfig
from agmc_onnx.search.table_budget import latency_wall

# torchvision networks at 224x224 with random weights (latency only: no accuracy is measured on them).
TORCHVISION = {"tv_resnet50": "resnet50", "tv_mobilenet_v2": "mobilenet_v2"}


def model_path(name: str, cache: Path) -> Path:
    """A zoo model, or a torchvision network exported by the corpus exporter (BatchNormalization fused)."""
    if name not in TORCHVISION:
        return zoo_model_path(name)
    from agmc_onnx.models.corpus import CORPUS, CorpusEntry, export_corpus_model

    entry = CorpusEntry(f"{name}_224", f"torchvision.models:{TORCHVISION[name]}", 224, heavy=True)
    CORPUS[entry.name] = entry
    return export_corpus_model(entry.name, fused_bn=True, cache_dir=cache)


def _calibration(analysis) -> list[np.ndarray]:
    name = next(v.name for v in analysis.model.graph.input)
    shape = [1, *analysis.shapes[name][1:]]
    return [np.random.default_rng(0).standard_normal(shape).astype(np.float32)]


def _shipped(model, precision: str, calibration):
    return model if precision == "fp32" else quantize_model(model, calibration, precision[5:]).model


def _table_config(precision: str, args) -> TableConfig:
    return TableConfig(target=args.target, precision=precision, cache_dir=args.cache_dir or args.output / "tables",
                       max_sweep=args.max_sweep, max_fast_steps=args.max_fast_steps,
                       calibration_plans=args.calibration_plans, calibration_rounds=args.calibration_rounds,
                       runs=args.point_runs, round_to=args.round_to)


def latency_model_for(name: str, precision: str, analysis, calibration, args, rebuild: bool = False):
    """The model's predictor, built once and kept in the state folder, so that runs split over several
    invocations (each holding the timing lock briefly) share one set of coefficients. ``rebuild``: build
    it again (tables from the cache, calibration models timed again)."""
    path = _state(args) / f"latency-{name}-{precision}.pkl"
    if not rebuild and (kept := kept_predictor(path)) is not None:
        return kept
    started = time.perf_counter()

    def progress(done: int, total: int, phase: str) -> None:
        if done == total or done % 100 == 0:
            print(f"  {name} {precision} {phase}: {done}/{total} ({time.perf_counter() - started:.0f} s)", flush=True)

    latency_model = build_latency_model(analysis, _table_config(precision, args), progress,
                                        ship=lambda pruned: _shipped(pruned, precision, calibration))
    seconds = time.perf_counter() - started
    path.write_bytes(pickle.dumps({"model": latency_model, "build_seconds": seconds}))
    return latency_model, seconds


def _state(args) -> Path:
    folder = (args.cache_dir or args.output) / "state"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def random_plans(analysis, latency_model, count: int, seed: int, round_to: int = 1) -> list[dict[str, float]]:
    """``count`` plans, every group on one of its staircase's fast steps; with ``round_to`` > 1 only the steps
    the search chooses from (on the ``--round-to`` grid, at or above the search's lower bound: its action space)."""
    rng = np.random.default_rng(seed)
    groups = analysis.prunable_groups
    if round_to == 1:  # every fast step, as the runs before the search kept to the grid drew them
        return [{g.id: int(rng.choice(latency_model.fast_counts(g.id))) / g.n_units for g in groups}
                for _ in range(count)]
    wall = latency_wall(groups, latency_model, float("inf"), SearchConfig().lower_bound, round_to)
    return [{g.id: int(rng.choice(steps)) / g.n_units for g, steps in zip(groups, wall.choices)}
            for _ in range(count)]


def evaluate_predictor(name: str, precision: str, args) -> dict:
    model = load_model(model_path(name, args.cache_dir or args.output / "models"))
    analysis = analyze_model(model)
    calibration = _calibration(analysis)
    latency_model, build_seconds = latency_model_for(name, precision, analysis, calibration, args)
    full = _shipped(analysis.model, precision, calibration)
    rows = []
    first, last = args.plan_range
    for index, keep in enumerate(random_plans(analysis, latency_model, args.plans, args.seed, args.round_to)):
        if not first <= index < last:
            continue
        selection = select_channels(PruningPlan(keep), analysis.groups, channel_scores(analysis))
        pruned, _ = apply_selection(analysis, selection)
        shipped = _shipped(pruned, precision, calibration)
        # Paired against the unpruned model of the same precision, so that the machine's drift between
        # plans cancels: the measured latency is the paired ratio times the full model's measured latency.
        attempts = settled_pairs(full, shipped, latency_model.measured_full_ms, args)
        paired = attempts[-1]
        rows.append({"index": index, "predicted_ms": latency_model.predict(keep), "keep": keep,
                     "plain_sum_ms": latency_model.plain(keep),
                     "measured_ms": latency_model.measured_full_ms / paired.speedup,
                     "measured_ratio": 1.0 / paired.speedup, "full_ms": paired.a.median_ms,
                     "plan_ms": paired.b.median_ms, "ci": [paired.speedup_low, paired.speedup_high],
                     "attempts": [{"measured_ratio": 1.0 / a.speedup, "full_ms": a.a.median_ms} for a in attempts]})
    return _predictor_row(name, precision, rows, {
        "scale": latency_model.scale, "macs_ms": latency_model.macs_ms, "build_seconds": build_seconds,
        "full_measured_ms": latency_model.measured_full_ms, "overhead_ms": latency_model.overhead_ms,
        "table_points": sum(len(t.entries) for t in latency_model.tables.values()),
        "calibration_models": len(latency_model.calibration_ms) - 1,
    })


def settled_pairs(full, shipped, reference_ms: float, args) -> list:
    """Paired timings of ``shipped`` against ``full``, the last the one kept. With ``--settle F``: while the
    full model's time in the pair is more than F off ``reference_ms`` (its time when the tables were
    calibrated), the pair is timed again, up to twice; the attempt whose full-model time is nearest the
    reference is moved last. A slow patch of the machine does not slow both models alike, so a pair timed
    in one measures another machine than the one the predictor was calibrated on; every attempt is kept."""
    attempts = []
    for _ in range(3 if args.settle else 1):
        attempts.append(measure_paired(full, shipped, args.target, n_rounds=args.rounds,
                                       runs_per_block=args.runs_per_block, sessions=args.sessions))
        if abs(attempts[-1].a.median_ms / reference_ms - 1.0) <= args.settle:  # settle 0: one attempt anyway
            break
    nearest = min(attempts, key=lambda a: abs(a.a.median_ms / reference_ms - 1.0))
    return [a for a in attempts if a is not nearest] + [nearest]


def _predictor_row(name: str, precision: str, plans: list[dict], extra: dict) -> dict:
    errors = np.array([abs(r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"] for r in plans])
    first = [r["attempts"][0]["measured_ratio"] * extra["full_measured_ms"] for r in plans if r.get("attempts")]
    if len(first) == len(plans) and any(len(r["attempts"]) > 1 for r in plans):  # the first timing of every plan
        first_errors = np.array([abs(r["predicted_ms"] - m) / m for r, m in zip(plans, first)])
        extra["first_timing_errors"] = {"median": float(np.median(first_errors)),
                                        "p90": float(np.percentile(first_errors, 90)),
                                        "re_timed_plans": sum(len(r["attempts"]) > 1 for r in plans)}
    plain_errors = np.array([abs(r["plain_sum_ms"] - r["measured_ms"]) / r["measured_ms"] for r in plans])
    half_widths = [(p["ci"][1] - p["ci"][0]) * p["measured_ratio"] / 2 for p in plans if "ci" in p]
    extra["measurement_ci"] = float(np.median(half_widths)) if half_widths else None
    return {"model": name, "precision": precision, "plans": plans, **extra,
            "median_error": float(np.median(errors)), "p90_error": float(np.percentile(errors, 90)),
            "plain_median_error": float(np.median(plain_errors)),
            "plain_p90_error": float(np.percentile(plain_errors, 90))}


def int8_speedup(name: str, args) -> dict:
    model = load_model(model_path(name, args.cache_dir or args.output / "models"))
    analysis = analyze_model(model)
    row = {"model": name}
    for fmt in ("qoperator", "qdq"):
        quantized = quantize_model(analysis.model, _calibration(analysis), fmt).model
        paired = measure_paired(model, quantized, args.target, n_rounds=args.rounds,
                                runs_per_block=args.runs_per_block, sessions=args.sessions)
        row[fmt] = {"speedup": paired.speedup, "low": paired.speedup_low, "high": paired.speedup_high,
                    "fp32_ms": paired.a.median_ms, "int8_ms": paired.b.median_ms}
    return row


def speedup_table(name: str, int8_format: str, args) -> list[dict]:
    """Original, INT8 only, and the plan of each budget: paired speed-up and test top-1 after least-squares
    reconstruction of the pruned layers (no fine-tuning). INT8 rows use ``int8_format``, the format measured
    faster on this machine (what ``--format auto`` picks); INT8 budgets take the fp32 original from the
    INT8-only row of this run. With ``--check-latency``, each latency budget also as closed by measurement."""
    from agmc_onnx.data import load_split, sample_subset, spec_from_model
    from agmc_onnx.search.recalibrate import calibration_batches

    model = load_model(model_path(name, args.cache_dir or args.output / "models"))
    analysis = analyze_model(model)
    if name in TORCHVISION:  # random weights: latency only, calibrated on random inputs
        batches, data = _calibration(analysis) * 8, None
    else:
        spec = spec_from_model(model)
        train = load_split(args.data, "train", spec)
        _, batches = calibration_batches(train, spec, 256, 32)
        data = (train, sample_subset(load_split(args.data, "test", spec), args.test_images), spec)
    int8_only = quantize_model(analysis.model, batches, int8_format).model
    rows = [_speed_row(name, "original", analysis.model, None, analysis, data, args),
            _speed_row(name, f"INT8 only ({int8_format})", int8_only, None, analysis, data, args)]
    latency_models = {p: latency_model_for(name, p, analysis, _calibration(analysis), args)[0]
                      for p in ("fp32", f"int8-{int8_format}")}
    plans = budget_plans(analysis, latency_models["fp32"], latency_models[f"int8-{int8_format}"],
                          [float(k) for k in args.int8_latency.split(",")], rows[1]["speedup"])
    variants = [(label, keep, predicted, None) for label, (keep, predicted, _) in plans.items()]
    for label, (_, _, chosen) in plans.items() if args.check_latency else ():
        if chosen is not None and "unreachable" not in label:
            precision = "fp32" if "INT8" not in label else f"int8-{int8_format}"
            ship = lambda m, p=precision: _shipped(m, p, _calibration(analysis))  # noqa: E731
            variants.append((f"{label}, measured and re-targeted, anchored",
                             *checked(analysis, label, chosen, ship(analysis.model), ship, args)))
    for label, keep, predicted, history in variants:  # predicted: fraction of the original
        selection = select_channels(PruningPlan(keep), analysis.groups, channel_scores(analysis))
        pruned, _ = apply_selection(analysis, selection)
        if data is not None:
            from agmc_onnx.reconstruct.run import reconstruct_pruned

            pruned = reconstruct_pruned(analysis, selection, pruned, data[0], data[2]).model
        if "INT8" in label:
            pruned = quantize_model(pruned, batches, int8_format).model
        rows.append(_speed_row(name, label, pruned, predicted, analysis, data, args) | {"checks": history})
    return rows


def _speed_row(name: str, label: str, variant, predicted, analysis, data, args) -> dict:
    from agmc_onnx.evaluate import evaluate_accuracy

    paired = measure_paired(analysis.model, variant, args.target, n_rounds=args.rounds,
                            runs_per_block=args.runs_per_block, sessions=args.sessions)
    return {"model": name, "variant": label, "speedup": paired.speedup, "low": paired.speedup_low,
            "high": paired.speedup_high, "ms": paired.b.median_ms, "predicted_fraction": predicted,
            "original_ms": paired.a.median_ms,
            "top1": None if data is None else evaluate_accuracy(variant, data[1], data[2]).top1}


def repredict(row: dict, latency_model, build_seconds: float = 0.0) -> dict:
    """The row's plans predicted again by ``latency_model`` (e.g. calibrated again, on other calibration
    models): the measured paired ratios do not depend on the predictor, so they are kept."""
    plans = [dict(p, predicted_ms=latency_model.predict(p["keep"]), plain_sum_ms=latency_model.plain(p["keep"]),
                  measured_ms=latency_model.measured_full_ms * p["measured_ratio"]) for p in row["plans"]]
    extra = {k: v for k, v in row.items() if not k.endswith("error") and k != "plans"}
    extra.update(scale=latency_model.scale, macs_ms=latency_model.macs_ms, overhead_ms=latency_model.overhead_ms,
                 calibration_models=len(latency_model.calibration_ms) - 1,
                 full_measured_ms=latency_model.measured_full_ms,
                 build_seconds=max(row["build_seconds"], build_seconds))
    return _predictor_row(row["model"], row["precision"], plans, extra)


def merge(paths: list[Path], output: Path, state: Path | None = None, args=None) -> None:
    """One table from runs split by model, precision, part or plan range (each short enough to hold the
    shared timing lock briefly): the plans of one (model, precision) are pooled, a later row of the INT8
    or speed-up tables replaces an earlier one. With ``state``, every predictor row is predicted again by
    the predictor kept there; with ``args.previous``, ``args.baseline_state`` or ``args.pool``, compared with
    an earlier predictor and earlier runs (``speed_compare``)."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    result = dict(parts[0])
    result["command"] = "; ".join(p["command"] for p in parts)
    pooled: dict[tuple[str, str], dict] = {}
    for row in (row for p in parts for row in p.get("predictor", [])):
        key = (row["model"], row["precision"])
        if key in pooled:
            extra = {k: v for k, v in pooled[key].items() if not k.endswith("error") and k != "plans"}
            extra["build_seconds"] = max(pooled[key]["build_seconds"], row["build_seconds"])  # one build, kept
            row = _predictor_row(*key, pooled[key]["plans"] + row["plans"], extra)
        pooled[key] = row
    result["predictor"] = list(pooled.values())
    if state is not None:
        result["repredicted"] = True
        result["predictor"] = [
            repredict(row, *kept_predictor(state / f"latency-{m}-{p}.pkl"))
            for row in result["predictor"] for m, p in [(row["model"], row["precision"])]
        ]
    result["int8"] = list({row["model"]: row for p in parts for row in p.get("int8", [])}.values())
    # One row per budget: a budget unreachable in both runs is labelled with each run's floor.
    speedups = list({(r["model"], r["variant"].split(" (unreachable")[0]): r
                     for p in parts for r in p.get("speedups", [])}.values())
    models = list(dict.fromkeys(r["model"] for r in speedups))
    result["speedups"] = sorted(speedups, key=lambda r: models.index(r["model"]))  # a later part's rows by its model
    result["test_images"] = next((p["test_images"] for p in parts if "test_images" in p), None)
    if args is not None and (args.previous or args.baseline_state or args.pool):
        result["comparison"] = compare(result, args.previous, args.baseline_state, args.pool or [])
    if args is not None and args.previous:
        carry_over(result, json.loads(args.previous.read_text()))
    if args is not None and args.note:
        result["note"] = args.note
    if args is not None and args.baseline_label:
        result["baseline_label"] = args.baseline_label
    output.mkdir(parents=True, exist_ok=True)
    (output / "speed.json").write_text(json.dumps(result, indent=1))
    write_markdown(result, output / "speed.md")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet20,resnet56,mobilenetv2")
    parser.add_argument("--precisions", default="fp32,int8-qoperator,int8-qdq",
                        help="int8-fastest: the format the INT8 part measured faster")
    parser.add_argument("--parts", default="int8,predictor,speedups",
                        help="Which parts to run (comma-separated: int8, calibrate, predictor, speedups); what a part "
                        "needs from another is read from the state folder")
    parser.add_argument("--plans", type=int, default=10)
    parser.add_argument("--plan-range", default=None, help="START:STOP: only these of the --plans random plans")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs-per-block", type=int, default=5)
    parser.add_argument("--max-sweep", type=int, default=64, help="Kept counts swept per group at most")
    parser.add_argument("--max-fast-steps", type=int, default=10)
    parser.add_argument("--calibration-plans", type=int, default=6)
    parser.add_argument("--calibration-rounds", type=int, default=10)
    parser.add_argument("--point-runs", type=int, default=25, help="Timed runs per table point at most")
    parser.add_argument("--sessions", type=int, default=1,
                        help="Spread each plan's paired rounds over this many fresh session pairs")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="Predictor: re-time a plan (twice at most) while the full model's time in its pair is "
                        "more than this fraction off the calibration's (0: never)")
    parser.add_argument("--check-latency", action="store_true",
                        help="Speed-up rows: each latency budget also closed by measurement (timed, re-targeted)")
    parser.add_argument("--check-tolerance", type=float, default=0.05)
    parser.add_argument("--target", default="mobile-cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--round-to", type=int, default=1, help="random plans on the fast steps of this grid (the "
                        "search's --round-to; 1: every fast step)")
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--data", type=Path, default=None, help="CIFAR-10 folder (the CIFAR models' top-1)")
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="Latency-table cache and state (predictors, INT8 rows) shared by split runs")
    parser.add_argument("--int8-latency", default="0.4", help="INT8 latency budgets (comma-separated)")
    parser.add_argument("--merge", type=Path, nargs="*", default=None,
                        help="Only combine the speed.json files of earlier runs into -o")
    parser.add_argument("--repredict", action="store_true",
                        help="With --merge: predict every plan again with the predictors in --cache-dir's state")
    parser.add_argument("--previous", type=Path, default=None, help="With --merge: an earlier run's speed.json")
    parser.add_argument("--note", default=None, help="With --merge: a remark printed under the command")
    parser.add_argument("--baseline-state", type=Path, default=None,
                        help="With --merge: a state folder whose predictors are scored on this run's measurements")
    parser.add_argument("--baseline-label", default=None,
                        help="With --merge: what the --baseline-state predictors are, in the comparison's legend")
    parser.add_argument("--pool", type=Path, nargs="*", default=None,
                        help="With --merge: earlier speed.json files that timed the same plans (averaged)")
    args = parser.parse_args()
    first, _, last = (args.plan_range or f"0:{args.plans}").partition(":")
    args.plan_range = (int(first), int(last))
    return args


def _fastest_int8(int8_state: Path) -> str:
    """The INT8 format measured faster (what ``--format auto`` picks), from the model's INT8 row."""
    int8 = json.loads(int8_state.read_text())
    return "int8-" + max(("qoperator", "qdq"), key=lambda f: int8[f]["speedup"])


def main() -> None:
    args = _arguments()
    if args.merge:
        merge(args.merge, args.output, _state(args) if args.repredict else None, args)
        return
    parts = set(args.parts.split(","))
    result = {"command": "python benchmarks/speed.py " + " ".join(os.sys.argv[1:]), "machine": machine(),
              "target": args.target, "n_plans": args.plans, "round_to": args.round_to, "predictor": [], "int8": []}
    for name in args.models.split(","):
        int8_state = _state(args) / f"int8-{name}.json"
        if "int8" in parts:
            result["int8"].append(int8_speedup(name, args))
            int8_state.write_text(json.dumps(result["int8"][-1]))
        precisions = [_fastest_int8(int8_state) if p == "int8-fastest" else p for p in args.precisions.split(",")]
        for precision in precisions if "calibrate" in parts else ():
            model = load_model(model_path(name, args.cache_dir or args.output / "models"))
            analysis = analyze_model(model)
            latency_model_for(name, precision, analysis, _calibration(analysis), args, rebuild=True)
        for precision in precisions if "predictor" in parts else ():
            row = evaluate_predictor(name, precision, args)
            print(f"{name} {precision}: median {row['median_error']:.3f} p90 {row['p90_error']:.3f} "
                  f"build {row['build_seconds']:.0f} s", flush=True)
            result["predictor"].append(row)
        if "speedups" in parts and (args.data is not None or name in TORCHVISION):
            rows = speedup_table(name, _fastest_int8(int8_state).removeprefix("int8-"), args)
            result["speedups"] = result.get("speedups", []) + rows
            result["test_images"] = args.test_images
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "speed.json").write_text(json.dumps(result, indent=1))
    write_markdown(result, args.output / "speed.md")


if __name__ == "__main__":
    main()
