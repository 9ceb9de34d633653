"""Markdown of the speed benchmark (``benchmarks/speed.py``): predictor accuracy, INT8 and speed-up tables,
and the goals against the run."""

from __future__ import annotations

from pathlib import Path

from speed_compare import comparison_section

# Speed-up over the fp32 original asked of the torchvision networks at 224×224.
TORCHVISION_GOALS = {"tv_resnet50": 5.0, "tv_mobilenet_v2": 2.2}


def write_markdown(result: dict, path: Path) -> None:
    lines = [
        "# Latency tables: predictor accuracy and INT8 speed-up",
        "",
        f"Command: `{result['command']}`  ",
        *([f"Note: {result['note']}  "] if result.get("note") else []),
        f"Machine: {result['machine']['cpu_model']}, {result['machine']['cpu_cores']} cores, onnxruntime "
        f"{result['machine']['onnxruntime']}, load average at start {result['machine']['load_average_at_start']}; "
        f"target {result['target']}.",
        "",
        "Random plans: every group on one of its staircase's fast steps"
        + (f" on the `--round-to {result['round_to']}` grid at or above the search's lower bound (the search's action "
           "space)" if result.get("round_to", 1) > 1 else " (the search's action space before it kept to the "
           "`--round-to` grid)") + ", "
        f"{result['n_plans']} plans per row. INT8 plans are pruned, then quantized (per channel). Each plan is "
        "timed paired (A-B-B-A rounds in one process) against the unpruned model of the same precision, so the "
        "machine's drift between plans cancels; measured latency = that ratio × the full model's measured "
        "latency. A command with `--sessions N` spreads each paired timing's rounds over N fresh pairs of "
        "sessions (a session's memory placement can shift a small model's latency for as long as it lives).",
        "",
        "Error = |predicted − measured| / measured. *calibrated*: overhead + scale · Σ table + MACs term · kept "
        "fraction of the MACs, the three fitted by least squares on the full model and the *calibration models* "
        "(every group at a half, a third and two thirds of its width, then random fast-step plans drawn apart "
        "from the evaluated ones), each timed paired against the full model; the full model is one point of the "
        "fit (rows of this run) or the line was pinned to it (rows of the previous run); *plain*: the full "
        "model's measured latency minus what the tables say the cuts "
        "save." + (" Every plan predicted by the model's final predictor (kept in the state folder; its calibration "
                   "models timed in the last calibrate part), against the paired ratios measured in the runs "
                   "above." if result.get("repredicted") else "")
        + " *table points*: entries of the model's tables (with those an earlier build left in the on-disk cache); "
        "*build s*: the build's wall time (tables from the cache: only the calibration models are timed).",
        "",
        "| model | precision | plans | median error (calibrated) | p90 (calibrated) | median (plain) | p90 (plain) "
        "| scale | MACs term ms | full model ms | calibration models | table points | build s "
        "| ± measured (median 95 % CI half-width) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["predictor"]:
        lines.append(
            f"| {_name(row)} | {row['precision']} | {len(row['plans'])} | {100 * row['median_error']:.1f} % | "
            f"{100 * row['p90_error']:.1f} % | {100 * row['plain_median_error']:.1f} % | "
            f"{100 * row['plain_p90_error']:.1f} % | {row['scale']:.2f} | {row.get('macs_ms', 0):.3f} | "
            f"{row['full_measured_ms']:.3f} | {row.get('calibration_models', 6)} | "
            f"{row['table_points']} | {row['build_seconds']:.0f} | "
            + ("—" if row.get("measurement_ci") is None else f"{100 * row['measurement_ci']:.1f} %") + " |"
        )
    settled = [row for row in result["predictor"] if row.get("first_timing_errors")]
    if settled:
        lines += ["", "Settled timings (`--settle`): a plan whose pair found the full model more than the set fraction "
                  "off its calibration time was timed again (twice at most) and the pair nearest that time kept. "
                  "The same predictors against every plan's first timing:", ""]
        for row in settled:
            first = row["first_timing_errors"]
            lines.append(f"- {_name(row)} {row['precision']}: median {100 * first['median']:.1f} %, p90 "
                         f"{100 * first['p90']:.1f} % ({first['re_timed_plans']} of {len(row['plans'])} plans "
                         "re-timed)")
    lines += comparison_section(result)
    lines += ["", "INT8 (no pruning), paired A-B-B-A against the fp32 original in one process:", "",
              "| model | QOperator speed-up (95 % CI) | QDQ speed-up (95 % CI) |", "|---|---|---|"]
    for row in result["int8"]:
        cells = [
            f"{row[f]['speedup']:.2f}× ({row[f]['low']:.2f}–{row[f]['high']:.2f})" for f in ("qoperator", "qdq")
        ]
        lines.append(f"| {_name(row)} | {cells[0]} | {cells[1]} |")
    lines += _speedup_section(result)
    lines += _goals(result)
    path.write_text("\n".join(lines) + "\n")


def _goals(result: dict) -> list[str]:
    """The benchmark's goals against what this run measured."""
    lines = ["", "## Goals against this run", ""]
    floors = {(e["model"], e["precision"]): e["remeasured"] for e in result.get("comparison", []) if "remeasured" in e}
    for row in result["predictor"]:
        met = row["median_error"] <= 0.05 and row["p90_error"] <= 0.10
        floor = floors.get((row["model"], row["precision"])) if not row.get("carried") else None
        why = "" if met or floor is None else (
            f" (the same plans re-measured in the other runs score {100 * floor[0]:.1f} / {100 * floor[1]:.1f} % "
            "against this run's timings: the floor the machine's run-to-run spread sets)")
        lines.append(f"- predictor {_name(row)} {row['precision']}: median {100 * row['median_error']:.1f} % "
                     f"(goal ≤ 5 %), p90 {100 * row['p90_error']:.1f} % (goal ≤ 10 %): {'met' if met else 'not met'}"
                     + why)
    for row in result.get("speedups", []):
        if row["variant"].startswith("--latency 0.5") and "INT8" not in row["variant"]:
            met = abs(row["speedup"] - 2.0) <= 0.1
            lines.append(f"- `{row['variant']}` on {_name(row)}: {row['speedup']:.2f}× measured (goal 2.0× ± 5 %): "
                         f"{'met' if met else 'not met'}")
    best: dict[str, dict] = {}
    for row in result.get("speedups", []):
        if row["variant"] != "original" and row["speedup"] > best.get(row["model"], {"speedup": 0})["speedup"]:
            best[row["model"]] = row
    fastest = ", ".join(f"{m} {r['speedup']:.2f}× ({r['variant']})" for m, r in best.items())
    lines.append(f"- fastest row per model: {fastest}. Goals: 2.5× on the CIFAR models within 1 point of INT8 only "
                 "after the same fine-tuning, 5× on ResNet-50@224, 2.2× on MobileNetV2@224. The CIFAR rows are "
                 "feasible plans without fine-tuning, so the accuracy half of their goal is not measured here.")
    for model, goal in TORCHVISION_GOALS.items():
        if model in best:
            row = best[model]
            verdict = "met" if row["speedup"] >= goal else f"not met (ceiling measured here {row['speedup']:.2f}×)"
            lines.append(f"- {model}: fastest row {row['speedup']:.2f}× ({row['low']:.2f}–{row['high']:.2f}, "
                         f"{row['variant']}), goal ≥ {goal}×: {verdict}")
    return lines


def _speedup_section(result: dict) -> list[str]:
    lines: list[str] = []
    if result.get("speedups"):
        lines += ["", "Speed-ups, each paired against the fp32 original. Plans: the largest single keep ratio the "
                  "budget allows, then groups raised one fast step at a time while it holds (a feasible plan, "
                  "not a searched policy); `--latency` plans are chosen on the measured tables and their fast "
                  "steps, `--flops` on MACs with widths rounded to 8. INT8 rows use the format measured faster "
                  "above; an INT8 budget takes the fp32 original's latency from the INT8-only row of the same "
                  "run. Test top-1 on "
                  f"{result['test_images']} test images after least-squares reconstruction of the pruned layers, "
                  "**no fine-tuning**. *predicted*: the budget's own estimate of the kept fraction (of the MACs "
                  "for `--flops`, of the fp32 original's latency otherwise); *measured*: 1 / speed-up. "
                  "*measured and re-targeted*: the latency budget closed by measurement "
                  "(`search.latency_check`): the chosen plan timed once paired against the full model of its "
                  "precision; off the budget by more than the tolerance, the predictor corrected and the plan "
                  "chosen again (at most three timings; the checks are listed below the table), then the shipped "
                  "plan timed again for its row. *anchored*: the predictor corrected through the measured plans "
                  "nearest the budget (a ratio through one, a line through two); without it (an earlier "
                  "invocation): the predictor refitted with the timing as one more weighted calibration model.",
                  "", "| model | variant | speed-up (95 % CI) | measured fraction | predicted fraction | test top-1 |",
                  "|---|---|---|---|---|---|"]
        for row in result["speedups"]:
            predicted = "—" if row["predicted_fraction"] is None else f"{row['predicted_fraction']:.3f}"
            top1 = "— (random weights)" if row["top1"] is None else f"{100 * row['top1']:.2f} %"
            lines.append(f"| {_name(row)} | {row['variant']} | {row['speedup']:.2f}× ({row['low']:.2f}–"
                         f"{row['high']:.2f}) | {1 / row['speedup']:.3f} | {predicted} | {top1} |")
        checked = [r for r in result["speedups"] if r.get("checks")]
        if checked:
            lines += ["", "Checks of the re-targeted rows (fraction of the fp32 original: predicted → measured, "
                      "in order):", ""]
            lines += [f"- {r['model']} {r['variant']}: " + "; ".join(
                f"{c['predicted_fraction']:.3f} → {c['measured_fraction']:.3f}" for c in r["checks"]) for r in checked]
    return lines


def _name(row: dict) -> str:
    """The model's name, marked when the row comes from the previous run (not measured again)."""
    return f"{row['model']} (previous run)" if row.get("carried") else row["model"]
