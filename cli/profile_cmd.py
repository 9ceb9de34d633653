"""``agmc-onnx profile``: per-layer latency tables measured on the target, and each group's staircase."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from agmc_onnx.cli.options import model_argument, output_option, round_to_option, target_option
from agmc_onnx.io import load_model, write_bytes_atomic
from agmc_onnx.layer_latency import GroupStaircase, LayerLatencyModel, TableConfig, profile_model

__all__ = ["command", "render_staircase"]


def render_staircase(staircase: GroupStaircase, unit_channels: int = 1) -> str:
    """``g3: 16 0.210 ms · 12 0.190 · [8 0.120] …`` — fast steps in brackets, slow counts listed only
    where they sit between fast steps."""
    latency = dict(zip(staircase.counts, staircase.latency_ms))
    fast = staircase.fast_counts
    parts = [f"{count} {latency[count]:.3f}" for count in sorted(fast, reverse=True)]
    slow = [c for c in staircase.counts if c not in fast]
    slower = sum(1 for c in slow if latency[c] >= min(latency[f] for f in fast if f >= c))
    return (
        f"{staircase.group_id}: fast steps (count ms) {' · '.join(parts)}; "
        f"{len(slow)} other counts, {slower} of them no faster than a larger fast step"
    )


def _progress_printer():
    started = time.perf_counter()
    last = {}

    def report(done: int, total: int, phase: str) -> None:
        tenth = done * 10 // max(total, 1)
        if last.get(phase) != tenth:
            last[phase] = tenth
            click.echo(f"{phase}: measured {done}/{total} ({time.perf_counter() - started:.0f} s)", err=True)

    return report


def _render(model: LayerLatencyModel, model_path: Path) -> None:
    identity = model.identity
    click.echo(
        f"{model_path.name} on {identity.target} ({identity.precision}, {identity.intra_op_threads} thread(s), "
        f"batch {identity.batch_size}), {identity.cpu}, onnxruntime {identity.onnxruntime}"
    )
    click.echo(
        f"{len(model.slots)} layers in {len(model.tables)} table(s); measured {model.measured_full_ms:.3f} ms, "
        f"tables sum {model.full_cost - model.overhead_ms:.3f} ms, overhead {model.overhead_ms:+.3f} ms"
    )
    if model.untabulated:
        click.echo(f"not tabulated (counted in the overhead at full width): {', '.join(model.untabulated)}")
    for staircase in model.staircases:
        click.echo(render_staircase(staircase))


@click.command("profile")
@model_argument()
@target_option("Latency target the tables are measured on.")
@click.option("--quantize", type=click.Choice(["none", "int8"]), default="none", show_default=True,
              help="Measure the INT8 form (onnxruntime static quantization) instead of fp32.")
@click.option("--format", "quant_format", type=click.Choice(["qoperator", "qdq"]), default="qoperator",
              show_default=True, help="With --quantize int8: the INT8 form to measure.")
@output_option("Where to write the tables, staircases and overhead as JSON.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Latency-table cache [default: ~/.cache/agmc-onnx/latency-tables].")
@click.option("--runs", type=click.IntRange(min=3), default=25, show_default=True, help="Timed runs per point.")
@round_to_option()
def command(model_path: Path, target: str, quantize: str, quant_format: str, output: Path,
            cache_dir: Path | None, runs: int, round_to: int) -> None:
    """Measure MODEL's per-layer latency tables on a target and print each group's latency staircase."""
    precision = "fp32" if quantize == "none" else f"int8-{quant_format}"
    # the whole-model calibration keeps to the grid of the search the tables are for (its --round-to)
    config = TableConfig(target=target, precision=precision, runs=runs, cache_dir=cache_dir, round_to=round_to)
    latency_model = profile_model(load_model(model_path), config, _progress_printer())
    write_bytes_atomic(output, json.dumps(latency_model.as_json(), indent=1).encode())
    _render(latency_model, model_path)
    click.echo(f"wrote {output}")
