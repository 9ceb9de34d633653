"""Predictor accuracy against an earlier predictor and earlier measurements of the same plans
(``benchmarks/speed.py --merge ... --previous OLD.json --baseline-state DIR --pool RUN.json ...``).

The random plans depend only on the tables and the seed, so runs with the same cached tables time the very
same plans: an earlier predictor can be scored on this run's measurements (the same timings for both
predictors), and the runs' ratios averaged into a less noisy measurement of each plan."""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

import numpy as np


def _errors(predicted: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    errors = np.abs(predicted - measured) / measured
    return float(np.median(errors)), float(np.percentile(errors, 90))


def kept_predictor(path: Path):
    """(predictor, build seconds) kept in a state folder as ``path`` or, as committed, gzipped beside it
    (``path`` + ``.gz``); None when neither is there. An early format kept the predictor alone."""
    packed = path.with_name(path.name + ".gz")
    if not path.is_file() and not packed.is_file():
        return None
    kept = pickle.loads(path.read_bytes() if path.is_file() else gzip.decompress(packed.read_bytes()))
    return (kept["model"], kept["build_seconds"]) if isinstance(kept, dict) else (kept, 0.0)


def _predictor(state: Path, model: str, precision: str):
    kept = kept_predictor(state / f"latency-{model}-{precision}.pkl")
    return None if kept is None else kept[0]


def compare(result: dict, previous: Path | None, baseline_state: Path | None, pooled: list[Path]) -> list[dict]:
    """Per predictor row: this predictor and the baseline one on this run's measured ratios, the previous
    run's own figures, and both predictors against the mean ratio of this run and the pooled runs (plans
    matched by index, their kept fractions checked equal), with the median difference between the runs and
    the other runs' mean scored as a predictor of this run (``remeasured``). Rows carried over from an
    earlier run are not compared again."""
    def rows_of(path: Path) -> dict:
        return {(r["model"], r["precision"]): r for r in json.loads(path.read_text())["predictor"]}

    earlier = rows_of(previous) if previous else {}
    others = [rows_of(p) for p in pooled]
    comparison = []
    for row in (r for r in result["predictor"] if not r.get("carried")):
        key = (row["model"], row["precision"])
        plans = sorted(row["plans"], key=lambda p: p["index"])
        ratios = np.array([p["measured_ratio"] for p in plans])
        full_ms = plans[0]["measured_ms"] / plans[0]["measured_ratio"]  # the predictor's full-model latency
        ours = np.array([p["predicted_ms"] for p in plans]) / full_ms
        entry = {"model": key[0], "precision": key[1], "this": _errors(ours, ratios)}
        baseline = _predictor(baseline_state, *key) if baseline_state else None
        if baseline is not None:
            theirs = np.array([baseline.predict(p["keep"]) for p in plans]) / baseline.measured_full_ms
            entry["baseline"] = _errors(theirs, ratios)
        if key in earlier:
            entry["previous"] = (earlier[key]["median_error"], earlier[key]["p90_error"])
        runs = [ratios]
        for other in (o[key] for o in others if key in o):
            by_index = {p["index"]: p for p in other["plans"]}
            if all(p["index"] in by_index and by_index[p["index"]]["keep"] == p["keep"] for p in plans):
                runs.append(np.array([by_index[p["index"]]["measured_ratio"] for p in plans]))
        if len(runs) > 1:
            mean = np.mean(runs, axis=0)
            entry["runs"] = len(runs)
            entry["this_vs_mean"] = _errors(ours, mean)
            if baseline is not None:
                entry["baseline_vs_mean"] = _errors(theirs, mean)
            entry["run_spread"] = float(np.median(np.std(runs, axis=0, ddof=1) / mean))
            # the best a predictor could do against this run's timings: the same plans measured again
            entry["remeasured"] = _errors(np.mean(runs[1:], axis=0), ratios)
        comparison.append(entry)
    return comparison


def comparison_section(result: dict) -> list[str]:
    """Markdown table of ``compare``'s rows (median / p90 error)."""
    if not result.get("comparison"):
        return []

    def cell(pair) -> str:
        return "—" if pair is None else f"{100 * pair[0]:.1f} / {100 * pair[1]:.1f} %"

    lines = ["", "Predictor against the previous one (median / p90 error). *this run*: this predictor on this "
             "run's measurements (the table above); *previous predictor, same timings*: "
             + result.get("baseline_label", "the predictor committed before (three uniform and three random "
                          "calibration models)") + " scored on this run's measurements; "
             "*previous run*: that predictor on its own run's measurements, as committed; *vs mean of runs*: "
             "against each plan's ratio averaged over this run and the earlier runs that timed the same plans; "
             "*run spread*: median over the plans of the runs' standard deviation / mean (how far one "
             "measurement of a plan moves between runs); *re-measured*: the mean of the other runs' ratios of the "
             "same plans scored as a predictor against this run's (what a predictor that knew every plan's "
             "latency from earlier timings on this machine would score: the floor the run-to-run spread sets).",
             "",
             "| model | precision | this run | previous predictor, same timings | previous run | runs averaged "
             "| this vs mean of runs | previous predictor vs mean | run spread | re-measured |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for e in result["comparison"]:
        spread = "—" if "run_spread" not in e else f"{100 * e['run_spread']:.1f} %"
        lines.append(f"| {e['model']} | {e['precision']} | {cell(e['this'])} | {cell(e.get('baseline'))} | "
                     f"{cell(e.get('previous'))} | {e.get('runs', 1)} | {cell(e.get('this_vs_mean'))} | "
                     f"{cell(e.get('baseline_vs_mean'))} | {spread} | {cell(e.get('remeasured'))} |")
    return lines


def carry_over(result: dict, previous: dict) -> None:
    """Rows of ``previous`` this run did not measure again (a model and precision, a model's INT8 or
    speed-up rows), appended marked ``carried``, so that the table stays whole."""
    def carried(rows: list[dict]) -> list[dict]:
        return [dict(r, carried=True) for r in rows]

    keys = {(r["model"], r["precision"]) for r in result["predictor"]}
    result["predictor"] += carried([r for r in previous["predictor"] if (r["model"], r["precision"]) not in keys])
    for part in ("int8", "speedups"):
        models = {r["model"] for r in result.get(part, [])}
        result[part] = result.get(part, []) + carried([r for r in previous.get(part, []) if r["model"] not in models])
