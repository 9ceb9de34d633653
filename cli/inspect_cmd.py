"""``agmc-onnx inspect``: the channel groups of a model, what each controls, and why some are pinned."""

from __future__ import annotations

import json
from pathlib import Path

import click

from agmc_onnx.analysis import ModelAnalysis, analyze_model
from agmc_onnx.cli.options import json_option, model_argument
from agmc_onnx.graph.versions import converted_from_opset, default_opset
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
        branch = analysis.depth.branch_of(group.id)
        entry["removable_branch"] = branch.id if branch is not None else None
        groups.append(entry)
    branches = []
    for branch in analysis.depth.branches:
        entry = branch.summary()
        entry["macs_share"] = branch.macs / total_macs
        branches.append(entry)
    return {
        "opset": default_opset(analysis.model),
        "converted_from_opset": converted_from_opset(analysis.model),
        "nodes": len(analysis.layers),
        "groups": len(analysis.groups),
        "prunable_groups": len(analysis.prunable_groups),
        "macs": analysis.total_macs,
        "params": analysis.total_params,
        "prunable_macs_share": analysis.prunable_macs / total_macs,
        "analysis_seconds": analysis.seconds,
        "channel_groups": groups,
        "residual_branches": branches,
    }


def _millions(value: float) -> str:
    return f"{value / 1e6:.2f}M"


@click.command("inspect")
@model_argument()
@json_option("Print the analysis as JSON on stdout.")
@click.option("--all", "show_all", is_flag=True, help="List every group (default: the first 40).")
def command(model_path: Path, as_json: bool, show_all: bool) -> None:
    """List the channel groups of MODEL: channels, MACs and parameter share, prunable or pinned and why."""
    analysis = analyze_model(load_model(model_path))
    summary = analysis_summary(analysis)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(
        f"{model_path}: {summary['nodes']} nodes, {summary['groups']} channel groups "
        f"({summary['prunable_groups']} prunable)"
    )
    if summary["converted_from_opset"] is not None:
        click.echo(
            f"opset {summary['converted_from_opset']} in the file, converted on load to opset {summary['opset']}"
        )
    click.echo(
        f"MACs {_millions(summary['macs'])}, params {_millions(summary['params'])}, "
        f"prunable MACs {summary['prunable_macs_share']:.1%}, analysed in {analysis.seconds:.2f}s"
    )
    click.echo("")
    rows = summary["channel_groups"] if show_all else summary["channel_groups"][:40]
    width = max([10] + [len(_status(entry)) for entry in rows if entry["removable_branch"]])
    click.echo(
        f"{'group':>6}  {'channels':>8}  {'units':>5}  {'MACs':>6}  {'params':>6}  {'status':<{width}}  first producer"
    )
    for entry in rows:
        click.echo(
            f"{entry['id']:>6}  {entry['n_channels']:>8}  {entry['n_units']:>5}  {entry['macs_share']:>6.1%}  "
            f"{entry['params_share']:>6.1%}  {_status(entry):<{width}}  {entry['name']}"
        )
    if len(rows) < len(summary["channel_groups"]):
        click.echo(f"... {len(summary['channel_groups']) - len(rows)} more (use --all)")
    _echo_branches(summary["residual_branches"], summary["nodes"], show_all)


def _status(entry: dict) -> str:
    branch = entry["removable_branch"]
    return entry["status"] if branch is None else f"{entry['status']}, removable ({branch})"


def _echo_branches(branches: list[dict], n_nodes: int, show_all: bool) -> None:
    """Removable residual branches: keep ratio 0 for one of their groups deletes them."""
    click.echo("")
    if not branches:
        click.echo("no removable residual branch (keep ratio 0 is accepted for no group)")
        return
    click.echo(f"{len(branches)} removable residual branches (keep ratio 0 for one of its groups deletes it):")
    click.echo(f"{'branch':>6}  {'groups':<12}  {'operators':>9}  {'MACs':>6}  merge")
    for entry in branches if show_all else branches[:40]:
        groups = ",".join(entry["groups"]) or "-"
        click.echo(
            f"{entry['id']:>6}  {groups:<12}  {entry['operators']:>4} of {n_nodes:<3}  "
            f"{entry['macs_share']:>6.1%}  {entry['merge']}"
        )
    if not show_all and len(branches) > 40:
        click.echo(f"... {len(branches) - 40} more (use --all)")
