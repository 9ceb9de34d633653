"""``agmc-onnx bench``: onnxruntime latency of a model on a target profile, or paired A/B speed-up."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from agmc_onnx.cli.options import MODEL_FILE, json_option, model_argument, target_option, valued_option
from agmc_onnx.cost import LatencyStats, measure_latency, measure_paired

__all__ = ["command"]


def _describe(stats: LatencyStats) -> str:
    return (
        f"median {stats.median_ms:.3f} ms, p90 {stats.p90_ms:.3f} ms, mean {stats.mean_ms:.3f} ms "
        f"over {stats.n_runs} runs"
    )


@click.command("bench")
@model_argument()
@valued_option(
    "--vs",
    "other_path",
    type=MODEL_FILE,
    help="Second model: measure both interleaved (A-B-B-A) and report MODEL/OTHER median ratio.",
)
@target_option()
@valued_option(
    "--batch-size", type=click.IntRange(min=1), help="Batch size for a dynamic batch dimension [default: the target's]."
)
@valued_option(
    "--min-seconds",
    type=click.FloatRange(min=0.0),
    default=1.0,
    help="Single-model mode: keep timing at least this long.",
)
@valued_option("--rounds", type=click.IntRange(min=2), default=20, help="Paired mode: number of A-B-B-A rounds.")
@json_option()
def command(
    model_path: Path,
    other_path: Path | None,
    target: str,
    batch_size: int | None,
    min_seconds: float,
    rounds: int,
    as_json: bool,
) -> None:
    """Latency of MODEL through onnxruntime on a target profile (with --vs: paired speed-up)."""
    if other_path is None:
        stats = measure_latency(model_path, target, batch_size=batch_size, min_seconds=min_seconds)
        if as_json:
            click.echo(json.dumps({"model": str(model_path), **dataclasses.asdict(stats)}, indent=2))
        else:
            click.echo(f"{model_path.name} on {stats.target} (batch {stats.batch_size}): {_describe(stats)}")
        return
    click.echo(f"measuring {model_path.name} vs {other_path.name} on {target}, {rounds} rounds", err=True)
    # A is the baseline (--vs), B the model: speedup = time(A) / time(B), above 1 when MODEL is faster.
    paired = measure_paired(other_path, model_path, target, batch_size=batch_size, n_rounds=rounds)
    if as_json:
        payload = {"model": str(model_path), "baseline": str(other_path), **dataclasses.asdict(paired)}
        click.echo(json.dumps(payload, indent=2))
        return
    click.echo(f"{model_path.name}: {_describe(paired.b)}")
    click.echo(f"{other_path.name} (baseline): {_describe(paired.a)}")
    click.echo(
        f"speed-up of {model_path.name} over {other_path.name} on {paired.a.target} (batch {paired.a.batch_size}): "
        f"{paired.speedup:.3f}× (95 % CI {paired.speedup_low:.3f}–{paired.speedup_high:.3f}, {paired.n_rounds} rounds)"
    )
