"""``agmc-onnx prune``: apply keep ratios, validate against the oracle, write the smaller model."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import click

from agmc_onnx.analysis import analyze_model
from agmc_onnx.cli.options import data_option, json_option, model_argument, output_option, valued_option
from agmc_onnx.errors import PlanError
from agmc_onnx.graph.versions import converted_from_opset, default_opset
from agmc_onnx.importance import DATA_IMPORTANCE, IMPORTANCE_NAMES, Importance, build_importance
from agmc_onnx.io import load_model, save_model, stored_size
from agmc_onnx.loaded_model import detach_loaded_model, without_file_weights
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


def _training_images(original, data: Path | None):
    """(dataset, preprocessing) of the training split of ``data``, checked against the model."""
    if data is None:
        return None
    from agmc_onnx.data import check_images_fit, load_split, spec_from_model

    spec = spec_from_model(original)
    dataset = load_split(data, "train", spec)
    check_images_fit(dataset.images, spec, str(data))
    return dataset, spec


def _importance(name: str | None, plan: PruningPlan, training) -> Importance | None:
    """The ranking criterion; ``taylor`` draws its labelled batches from the calibration data."""
    name = name or plan.importance
    if name not in DATA_IMPORTANCE:
        return None
    if training is None:
        raise click.UsageError(f"--importance {name} needs images: give --reconstruct DATA or --calibrate DATA")
    from agmc_onnx.search.recalibrate import calibration_batches

    dataset, spec = training
    rows, batches = calibration_batches(dataset, spec, n_images=256, batch_size=64)
    return build_importance(name, batches, [dataset.labels[r] for r in rows])


def _finish(original, analysis, result, training, reconstruct: bool, n_images: int | None, later: bool):
    """BN re-estimation, or least-squares reconstruction (``later``: of every layer after the first pruned
    one too); checked like any output. Returns the model and the number of layers re-fitted (None: BN only)."""
    from agmc_onnx.passes.base import run_passes
    from agmc_onnx.passes.reestimate_batchnorm import ReestimateBatchNormPass
    from agmc_onnx.search.recalibrate import calibration_batches
    from agmc_onnx.validate import check_written_model

    dataset, spec = training
    if reconstruct:
        from agmc_onnx.reconstruct.run import ReconstructConfig, reconstruct_pruned

        config = ReconstructConfig(calibration_images=n_images, downstream=later)
        done = reconstruct_pruned(analysis, result.selection, result.model, dataset, spec, config)
        model, refitted = done.model, done.layers_refitted
    else:
        _, batches = calibration_batches(dataset, spec, n_images or 256)
        model, refitted = run_passes(result.model, [ReestimateBatchNormPass(batches)]), None
    check_written_model(original, model)
    return model, refitted


def _fmt(before: float, after: float, unit: str = "") -> str:
    ratio = after / before if before else 1.0
    return f"{before:,.0f}{unit} -> {after:,.0f}{unit} ({ratio:.1%})"


@click.command("prune")
@model_argument()
@valued_option(
    "--keep",
    "keep_ratio",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    help="Keep this fraction of every prunable group's channels.",
)
@valued_option(
    "--ratios",
    "ratios_file",
    type=click.Path(path_type=Path),
    help="JSON file of keep ratios per group (a policy written by `search`).",
)
@valued_option(
    "--round-to",
    type=click.IntRange(min=1),
    help="Round kept channel counts up to a multiple of this (default 1, or the file's).",
)
@valued_option("--importance", type=click.Choice(IMPORTANCE_NAMES), help="Channel ranking (default l1).")
@output_option()
@data_option(
    "Re-estimate BatchNormalization statistics on 256 class-balanced training images of this dataset (without "
    "it a pruned model's accuracy collapses until it is fine-tuned)",
    must_exist=True,
    required=False,
    flag="--calibrate",
    dest="calibration_data",
)
@data_option(
    "Re-fit every layer that lost input channels by least squares so it reproduces the original on "
    "class-balanced training images of this dataset",
    must_exist=True,
    required=False,
    flag="--reconstruct",
    dest="reconstruction_data",
)
@valued_option(
    "--calibration-images",
    type=click.IntRange(min=1),
    help="Images for --calibrate (default 256) or --reconstruct (default 1,024, more when a layer has more "
    "unknown weights).",
)
@click.option(
    "--refit-later-layers/--refit-pruned-only",
    default=True,
    help="With --reconstruct: also re-fit every weighted layer after the first pruned one, so later layers absorb "
    "what earlier ones could not reproduce (the default: ResNet-56 at 50 %% MACs 85.7 %% instead of 84.1 %% "
    "before fine-tuning, in twice the time; benchmarks/results/accuracy.md), or only the layers that lost input "
    "channels.",
)
@click.option("--no-validate", is_flag=True, help="Skip the equivalence oracle (the checker still runs).")
@json_option("Print the result as JSON on stdout.")
def command(
    model_path: Path,
    keep_ratio: float | None,
    ratios_file: Path | None,
    round_to: int | None,
    importance: str | None,
    output: Path,
    calibration_data: Path | None,
    reconstruction_data: Path | None,
    calibration_images: int | None,
    refit_later_layers: bool,
    no_validate: bool,
    as_json: bool,
) -> None:
    """Prune MODEL's channels and write the physically smaller model to OUTPUT."""
    if (keep_ratio is None) == (ratios_file is None):
        raise click.UsageError("give exactly one of --keep or --ratios")
    if output.exists() and model_path.exists() and output.resolve() == model_path.resolve():
        raise click.UsageError("the output must not overwrite the input model")
    if calibration_data is not None and reconstruction_data is not None:
        raise click.UsageError("give one of --calibrate or --reconstruct (reconstruction re-estimates BN too)")
    refit_given = click.get_current_context().get_parameter_source("refit_later_layers")
    if refit_given is click.core.ParameterSource.COMMANDLINE and reconstruction_data is None:
        raise click.UsageError("--refit-later-layers/--refit-pruned-only need --reconstruct DATA")
    original = load_model(model_path)
    training = _training_images(original, reconstruction_data or calibration_data)
    analysis = analyze_model(original)
    if not analysis.prunable_groups:
        raise PlanError(f"{model_path} has no prunable channel group (run `agmc-onnx inspect` to see why)")
    if keep_ratio is not None:
        plan = uniform_plan(analysis.groups, keep_ratio, round_to or 1)
        plan = PruningPlan(plan.keep_ratios, plan.round_to, importance or "l1")
    else:
        plan = _read_plan(ratios_file, round_to, importance)
    loaded = None if no_validate else detach_loaded_model(original, analysis, model_path)
    if loaded is not None:  # the oracle keeps what it needs; the loaded model's weights are let go
        original = loaded.skeleton
        gc.collect()  # graphsurgeon graphs are cyclic, and one still reading the loaded model keeps all of it
    result = prune_model(analysis.model, plan, analysis=analysis, importance=_importance(importance, plan, training))
    if loaded is not None:
        if training is None:  # nothing after the oracle reads the prepared model's weights: the file has them
            analysis = without_file_weights(loaded, analysis)
            gc.collect()  # the old analysis is cyclic; it holds the prepared model's weights
        validate_pruned(loaded, analysis, result.selection, result.model)
    pruned, refitted = result.model, None
    if training is not None:
        reconstruct = reconstruction_data is not None
        pruned, refitted = _finish(
            original, analysis, result, training, reconstruct, calibration_images, refit_later_layers
        )
    save_model(pruned, output)
    summary = {
        "output": str(output),
        "macs": [result.before.macs, result.after.macs],
        "params": [result.before.params, result.after.params],
        "file_bytes": [stored_size(model_path), stored_size(output)],
        "pruned_groups": len(result.selection.keep_units),
        "removed_branches": list(result.selection.removed_branches),
        "validated": not no_validate,
        "batchnorm_recalibrated": training is not None,
        "reconstructed": reconstruction_data is not None,
        "layers_refitted": refitted,
        "seconds": result.seconds,
        "converted_from_opset": converted_from_opset(original),
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _render(summary, default_opset(pruned))


def _render(summary: dict, opset: int) -> None:
    removed = len(summary["removed_branches"])
    click.echo(
        f"wrote {summary['output']} ({summary['pruned_groups']} groups pruned"
        f"{f', {removed} residual branches removed' if removed else ''}"
        f"{', oracle passed' if summary['validated'] else ''})"
    )
    if summary["converted_from_opset"] is not None:
        click.echo(f"opset {summary['converted_from_opset']} of the input was converted to {opset} on load")
    click.echo(f"MACs       {_fmt(*summary['macs'])}")
    click.echo(f"params     {_fmt(*summary['params'])}")
    click.echo(f"file size  {_fmt(*summary['file_bytes'], ' B')}")
