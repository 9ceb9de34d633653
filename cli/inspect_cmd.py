"""``agmc-onnx inspect``: the channel groups of a model, what each controls, and why some are pinned."""

from __future__ import annotations

import json
from pathlib import Path

import click

from agmc_onnx.analysis import ModelAnalysis, analyze_model
from agmc_onnx.io import load_model

__all__ = ["command", "analysis_summary"]


def analysis_summary(analysis: ModelAnalysis) -> dict:
    total_macs = max(analysis.total_macs, 1)
    total_params = max(analysis.total_params, 1)
    groups = []
    for group in analysis.groups:
        entry = group.summary()
        entry["macs_share"] = group.macs / total_macs
        entry["params_share"] = group.params / total_params
        groups.append(entry)
    return {
        "nodes": len(analysis.layers),
        "groups": len(analysis.groups),
        "prunable_groups": len(analysis.prunable_groups),
        "macs": analysis.total_macs,
        "params": analysis.total_params,
        "prunable_macs_share": analysis.prunable_macs / total_macs,
        "analysis_seconds": analysis.seconds,
        "channel_groups": groups,
    }


def _millions(value: float) -> str:
    return f"{value / 1e6:.2f}M"


@click.command("inspect")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the analysis as JSON on stdout.")
@click.option("--all", "show_all", is_flag=True, help="List every group (default: the first 40).")
def command(model: Path, as_json: bool, show_all: bool) -> None:
    """List the channel groups of MODEL: channels, MACs and parameter share, prunable or pinned and why."""
    analysis = analyze_model(load_model(model))
    summary = analysis_summary(analysis)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(
        f"{model}: {summary['nodes']} nodes, {summary['groups']} channel groups ({summary['prunable_groups']} prunable)"
    )
    click.echo(
        f"MACs {_millions(summary['macs'])}, params {_millions(summary['params'])}, "
        f"prunable MACs {summary['prunable_macs_share']:.1%}, analysed in {analysis.seconds:.2f}s"
    )
    click.echo("")
    click.echo(
        f"{'group':>6}  {'channels':>8}  {'units':>5}  {'MACs':>6}  {'params':>6}  {'status':<10}  first producer"
    )
    rows = summary["channel_groups"] if show_all else summary["channel_groups"][:40]
    for entry in rows:
        click.echo(
            f"{entry['id']:>6}  {entry['n_channels']:>8}  {entry['n_units']:>5}  {entry['macs_share']:>6.1%}  "
            f"{entry['params_share']:>6.1%}  {entry['status']:<10}  {entry['name']}"
        )
    if len(rows) < len(summary["channel_groups"]):
        click.echo(f"... {len(summary['channel_groups']) - len(rows)} more (use --all)")
