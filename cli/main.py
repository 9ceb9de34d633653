"""The ``agmc-onnx`` command: one click group, commands registered explicitly below.

Commands load on first use: ``agmc-onnx --help`` imports click and nothing heavy, and each command
imports only what it needs (``inspect``, ``prune`` and ``eval`` never import torch).
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from agmc_onnx.cli.errors import ErrorBoundaryGroup

__all__ = ["main", "cli", "COMMANDS"]

# name -> (module holding ``command``, the one-line summary --help lists; a test keeps it equal to the
# command's own docstring)
COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": (
        "agmc_onnx.cli.inspect_cmd",
        "List the channel groups of MODEL: channels, MACs and parameter share, prunable or pinned and why.",
    ),
    "prune": ("agmc_onnx.cli.prune_cmd", "Prune MODEL's channels and write the physically smaller model to OUTPUT."),
    "search": (
        "agmc_onnx.cli.search_cmd",
        "Search per-group keep ratios for MODEL under a MACs (--flops) or latency (--latency) budget.",
    ),
    "finetune": (
        "agmc_onnx.cli.finetune_cmd",
        "Fine-tune MODEL on the training split of --data; only the initializers' numbers change.",
    ),
    "eval": ("agmc_onnx.cli.eval_cmd", "Accuracy of MODEL on a dataset split, through onnxruntime."),
    "bench": (
        "agmc_onnx.cli.bench_cmd",
        "Latency of MODEL through onnxruntime on a target profile (with --vs: paired speed-up).",
    ),
    "profile": (
        "agmc_onnx.cli.profile_cmd",
        "Measure MODEL's per-layer latency tables on a target and print each group's latency staircase.",
    ),
    "quantize": (
        "agmc_onnx.cli.quantize_cmd",
        "Static INT8 quantization of MODEL (per channel), with test top-1 before and after.",
    ),
    "compress": (
        "agmc_onnx.cli.compress_cmd",
        "Search, prune, fine-tune and measure MODEL; write OUTPUT/model.onnx and a report.",
    ),
}


class LazyCommandGroup(ErrorBoundaryGroup):
    """Imports a command's module only when that command runs or its own help is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        return importlib.import_module(entry[0]).command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, _summary(name).get_short_help_str(limit)) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _summary(name: str) -> click.Command:
    """A stand-in carrying only the help text, so listing commands imports none of them."""
    return click.Command(name, help=COMMANDS[name][1])


@click.group(cls=LazyCommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(package_name="agmc-onnx")
@click.pass_context
def cli(ctx: click.Context, verbose: int, debug: bool) -> None:
    """Channel pruning of ONNX models: inspect, prune, search, fine-tune, measure, compress."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # The command's module is imported before this callback runs; commands that run onnxruntime sessions
    # import it there. It prints its own warnings and errors on stderr; its errors reach the user as our messages.
    if "onnxruntime" in sys.modules:
        sys.modules["onnxruntime"].set_default_logger_severity(4 if verbose < 2 else 2)
    return_freed_blocks()
    ctx.obj = {"debug": debug}


def return_freed_blocks() -> None:
    """Make glibc hand every freed block of 4 MiB or more back to the system at once.

    By default glibc raises that threshold to the size of each large block freed, so after the first freed
    weight array later weight-sized arrays come from the heap, whose freed space the process keeps: a
    transient copy of a model then stays in the peak memory of every later stage. Blocks under 4 MiB stay
    on the heap and are reused: mapping each afresh costs a page fault per 4 KiB page touched (at a 128 KiB
    threshold, system time, mostly those faults, was about a third of ``prune``'s CPU time on ResNet-50),
    while NumPy asks for huge pages for arrays of 4 MiB and more, so those fault rarely. Elsewhere than
    glibc: no-op.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 4 << 20)  # -3: M_MMAP_THRESHOLD (a fixed value)
    except (OSError, AttributeError):  # not glibc
        pass


def main() -> None:
    cli()
