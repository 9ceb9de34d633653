"""``agmc-onnx prune``: apply keep ratios, validate against the oracle, write the smaller model."""

from __future__ import annotations

import json
from pathlib import Path

import click

from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import PlanError
from agmc_onnx.io import load_model, save_model
from agmc_onnx.importance import IMPORTANCE_NAMES
from agmc_onnx.plan import PruningPlan, uniform_plan
from agmc_onnx.prune import prune_model
from agmc_onnx.validate import validate_pruned

__all__ = ["command"]


def _read_plan(path: Path, round_to: int | None, importance: str | None) -> PruningPlan:
    try:
        text = path.read_text()
    except OSError as exc:
        raise PlanError(f"cannot read ratios file {path}: {exc.strerror}") from None
    plan = PruningPlan.from_json(text, source=str(path))
    return PruningPlan(
        plan.keep_ratios,
        round_to=round_to if round_to is not None else plan.round_to,
        importance=importance or plan.importance,
        metadata=plan.metadata,
    )


def _recalibrated(original, pruned, data: Path):
    from agmc_onnx.data import load_split, spec_from_model
    from agmc_onnx.search.recalibrate import calibration_batches, recalibrate_batchnorm
    from agmc_onnx.validate import check_written_model

    spec = spec_from_model(original)
    _, batches = calibration_batches(load_split(data, "train", spec), spec)
    recalibrated = recalibrate_batchnorm(pruned, batches)
    check_written_model(original, recalibrated)
    return recalibrated


def _fmt(before: float, after: float, unit: str = "") -> str:
    ratio = after / before if before else 1.0
    return f"{before:,.0f}{unit} -> {after:,.0f}{unit} ({ratio:.1%})"


@click.command("prune")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--keep",
    "keep_ratio",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    help="Keep this fraction of every prunable group's channels.",
)
@click.option(
    "--ratios",
    "ratios_file",
    type=click.Path(path_type=Path),
    help="JSON file of keep ratios per group (a policy written by `search`).",
)
@click.option(
    "--round-to",
    type=click.IntRange(min=1),
    default=None,
    help="Round kept channel counts up to a multiple of this (default 1, or the file's).",
)
@click.option("--importance", type=click.Choice(IMPORTANCE_NAMES), default=None, help="Channel ranking (default l1).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Where to write the model.")
@click.option(
    "--calibrate",
    "calibration_data",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Re-estimate BatchNormalization statistics on 256 class-balanced training images of this dataset "
    "(without it a pruned model's accuracy collapses until it is fine-tuned).",
)
@click.option("--no-validate", is_flag=True, help="Skip the equivalence oracle (the checker still runs).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def command(
    model: Path,
    keep_ratio: float | None,
    ratios_file: Path | None,
    round_to: int | None,
    importance: str | None,
    output: Path,
    calibration_data: Path | None,
    no_validate: bool,
    as_json: bool,
) -> None:
    """Prune MODEL's channels and write the physically smaller model to OUTPUT."""
    if (keep_ratio is None) == (ratios_file is None):
        raise click.UsageError("give exactly one of --keep or --ratios")
    if output.exists() and model.exists() and output.resolve() == model.resolve():
        raise click.UsageError("the output must not overwrite the input model")
    original = load_model(model)
    analysis = analyze_model(original)
    if not analysis.prunable_groups:
        raise PlanError(f"{model} has no prunable channel group (run `agmc-onnx inspect` to see why)")
    if keep_ratio is not None:
        plan = uniform_plan(analysis.groups, keep_ratio, round_to or 1)
        plan = PruningPlan(plan.keep_ratios, plan.round_to, importance or "l1")
    else:
        plan = _read_plan(ratios_file, round_to, importance)
    result = prune_model(original, plan, analysis=analysis)
    if not no_validate:
        validate_pruned(original, analysis, result.selection, result.model)
    pruned = result.model
    if calibration_data is not None:
        pruned = _recalibrated(original, pruned, calibration_data)
    save_model(pruned, output)
    summary = {
        "output": str(output),
        "macs": [result.before.macs, result.after.macs],
        "params": [result.before.params, result.after.params],
        "file_bytes": [model.stat().st_size, output.stat().st_size],
        "pruned_groups": len(result.selection.keep_units),
        "removed_branches": list(result.selection.removed_branches),
        "validated": not no_validate,
        "batchnorm_recalibrated": calibration_data is not None,
        "seconds": result.seconds,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    removed = len(summary["removed_branches"])
    click.echo(
        f"wrote {output} ({summary['pruned_groups']} groups pruned"
        f"{f', {removed} residual branches removed' if removed else ''}"
        f"{', oracle passed' if not no_validate else ''})"
    )
    click.echo(f"MACs       {_fmt(*summary['macs'])}")
    click.echo(f"params     {_fmt(*summary['params'])}")
    click.echo(f"file size  {_fmt(*summary['file_bytes'], ' B')}")
