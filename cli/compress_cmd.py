"""``agmc-onnx compress``: one command from a model to a smaller, faster, verified model with a report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from agmc_onnx.cli.errors import GATE_EXIT_CODES, set_resume_hint
from agmc_onnx.cli.options import (
    Preprocessing,
    budget_options,
    data_option,
    depth_option,
    episodes_option,
    json_option,
    model_argument,
    path_option,
    policy_option,
    preprocessing_options,
    round_to_option,
    target_option,
    task_option,
    valued_option,
    workers_options,
)
from agmc_onnx.cli.progress import ProgressRenderer
from agmc_onnx.compress.config import resolve_config

__all__ = ["command"]


def _renderer() -> ProgressRenderer:
    return ProgressRenderer(stage_prefix=True)


def _summary(report, paths: dict) -> dict:
    return {
        "passed": report.gate.passed,
        "reasons": list(report.gate.reasons),
        "model": str(paths["model"]),
        "report": str(paths["report_json"]),
        "task": report.task,
        "test_top1": {
            "original": report.original.test_top1,
            "searched": report.searched.test_top1,
            "final": report.final.test_top1,
            "int8": report.quantized.test_top1 if report.quantized else None,
        },
        "accuracy_drop_points": report.accuracy_drop_points,
        "test_fidelity": {
            "searched": report.searched.test_fidelity,
            "final": report.final.test_fidelity,
            "int8": report.quantized.test_fidelity if report.quantized else None,
        },
        "fidelity_metric": report.fidelity_metric,
        "fidelity_loss_points": report.fidelity_loss_points,
        "preprocessing": report.preprocessing,
        "macs_kept_fraction": report.final.macs / report.original.macs,
        "achieved_keep_fraction": report.achieved_keep_fraction,
        "speedup": report.speedup,
        "speedup_interval": [report.speedup_low, report.speedup_high],
        "quantized_format": report.quantized_format,
        "latency_check": report.latency_check,
    }


def _echo_result(report, paths: dict) -> None:
    click.echo(f"wrote {paths['model']} and {paths['report_md']}", err=True)
    click.echo(f"task {report.task} ({report.task_reason}); preprocessing: {report.preprocessing}", err=True)
    if report.quantized is not None:
        from agmc_onnx.cli.quantize_cmd import describe_format

        int8 = report.quantized
        score = f"test top-1 {int8.test_top1:.2%}" if int8.test_top1 is not None else ""
        click.echo(
            f"shipped INT8, {describe_format(report.quantized_format)}: {score}{', ' if score else ''}"
            f"test fidelity {int8.test_fidelity:.2%}",
            err=True,
        )
    if report.original.test_top1 is not None:
        click.echo(
            f"test top-1: original {report.original.test_top1:.2%}, after search {report.searched.test_top1:.2%}, "
            f"after fine-tuning {report.final.test_top1:.2%}",
            err=True,
        )
    click.echo(
        f"test fidelity to the original ({report.fidelity_metric}): after search "
        f"{report.searched.test_fidelity:.2%}, after fine-tuning {report.final.test_fidelity:.2%}",
        err=True,
    )
    if report.accuracy_drop_points is not None:
        click.echo(f"accuracy drop of the shipped model: {report.accuracy_drop_points:+.2f} points", err=True)
    click.echo(f"fidelity loss of the shipped model: {report.fidelity_loss_points:.2f} points", err=True)
    click.echo(
        f"MACs kept {report.final.macs / report.original.macs:.1%}, params kept "
        f"{report.final.params / report.original.params:.1%}, {report.target} speed-up "
        f"{report.speedup:.2f}× [{report.speedup_low:.2f}, {report.speedup_high:.2f}]",
        err=True,
    )


@click.command("compress")
@model_argument()
@target_option(from_config=True)
@budget_options(from_config=True)
@data_option("Dataset", must_exist=True, required=False)
@episodes_option(from_config=True)
@policy_option(from_config=True)
@valued_option("--finetune-epochs", type=click.IntRange(min=0), help="[1]")
@valued_option(
    "--max-accuracy-drop",
    type=click.FloatRange(min=0.0),
    help="Gate: largest allowed drop of test top-1, in percentage points.",
)
@round_to_option(from_config=True)
@workers_options(from_config=True)
@depth_option
@valued_option(
    "--quantize",
    type=click.Choice(["none", "int8"]),
    help="int8: quantize the fine-tuned model (static, per channel; the ONNX form measured faster on --target); "
    "the gate and a --latency budget then judge the INT8 model [none].",
)
@click.option(
    "--check-latency/--no-check-latency",
    "check_latency",
    default=None,
    help="With --latency: time the searched plan as it ships (INT8 with --quantize int8) and re-target it when "
    "it is more than 5 % off the budget, at most three timings [on].",
)
@task_option
@valued_option(
    "--max-fidelity-loss",
    type=click.FloatRange(0.0, 100.0),
    help="Gate: largest allowed fall of test fidelity to the original, in percentage points.",
)
@preprocessing_options
@valued_option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML file with the same options (a [compress] table); flags override it.",
)
@path_option("-o", "--output", "out_dir", folder=True, help="Output folder [MODEL's name + '-compressed'].")
@click.option("--dry-run", is_flag=True, help="Analyse and estimate the budget without searching.")
@click.option("--restart", is_flag=True, help="Ignore an interrupted run's state in OUTPUT and start afresh.")
@json_option("Print a machine-readable summary on stdout.")
@valued_option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    help="torch threads for the agent and fine-tuning (onnxruntime threads follow --target).",
)
def command(
    model_path: Path,
    data_path: Path | None,
    config_file: Path | None,
    out_dir: Path | None,
    dry_run: bool,
    restart: bool,
    as_json: bool,
    threads: int,
    preprocessing: Preprocessing,
    **flags,
) -> None:
    """Search, prune, fine-tune and measure MODEL; write OUTPUT/model.onnx and a report.

    Without labels (images without class folders, or an .npz of arrays keyed by input name) the search
    rewards fidelity to the original's outputs and fine-tuning distils from it (--task fidelity).

    Exit codes: 0 passed; 1 bad input; 2 bad usage; 3 accuracy or fidelity gate failed; 4 budget not met;
    130 interrupted (run the same command again to resume).
    """
    # The remaining options carry CompressConfig's field names; None means "not given".
    flags["data"] = str(data_path) if data_path else None
    flags["depth"] = flags.pop("depth_threshold")
    flags |= preprocessing.overrides()
    flags["cache_dir"] = str(preprocessing.cache_dir) if preprocessing.cache_dir else None
    config = resolve_config(model_path, config_file, flags)
    if dry_run:
        from agmc_onnx.compress.dry_run import estimate

        summary = estimate(model_path, config)
        click.echo(json.dumps(summary, indent=2) if as_json else "\n".join(f"{k}: {v}" for k, v in summary.items()))
        return
    import torch

    from agmc_onnx.compress.outputs import write_outputs
    from agmc_onnx.compress.pipeline import run_compress

    # One thread by default: the agent's networks are small, and torch's thread pool degrades badly
    # when onnxruntime or other processes share the cores.
    torch.set_num_threads(threads)
    out_dir = out_dir or model_path.with_name(model_path.stem + "-compressed")
    set_resume_hint(f"Run the same command again to resume from {out_dir / '.work'}")
    with _renderer() as progress:
        run = run_compress(model_path, config, out_dir, restart=restart, progress=progress)
    paths = write_outputs(run, out_dir)
    report = run.report
    if as_json:
        click.echo(json.dumps(_summary(report, paths), indent=2))
    _echo_result(report, paths)
    if not report.gate.passed:
        click.echo("gate failed: " + "; ".join(report.gate.reasons), err=True)
        sys.exit(GATE_EXIT_CODES[report.gate.verdict])
