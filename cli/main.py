"""The ``agmc-onnx`` command: one click group, commands registered explicitly below."""

from __future__ import annotations

import logging

import click

from agmc_onnx.cli.errors import ErrorBoundaryGroup

__all__ = ["main", "cli"]


@click.group(cls=ErrorBoundaryGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(package_name="agmc-onnx")
@click.pass_context
def cli(ctx: click.Context, verbose: int, debug: bool) -> None:
    """Channel pruning of ONNX models: inspect, prune, search, fine-tune, measure, compress."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    import onnxruntime

    # onnxruntime logs optimizer notes on stderr at warning level; keep the CLI's output readable.
    onnxruntime.set_default_logger_severity(3 if verbose < 2 else 2)
    ctx.obj = {"debug": debug}


def _register() -> None:
    from agmc_onnx.cli import (
        bench_cmd,
        compress_cmd,
        eval_cmd,
        finetune_cmd,
        inspect_cmd,
        prune_cmd,
        search_cmd,
    )

    for module in (inspect_cmd, prune_cmd, search_cmd, finetune_cmd, eval_cmd, bench_cmd, compress_cmd):
        cli.add_command(module.command)


_register()


def main() -> None:
    cli()
