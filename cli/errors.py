"""One error boundary: library errors become one line on stderr and exit 1 (``--debug`` re-raises)."""

from __future__ import annotations

import click

from agmc_onnx.errors import AgmcError

__all__ = [
    "ErrorBoundaryGroup",
    "EXIT_USER_ERROR",
    "EXIT_ACCURACY_GATE",
    "EXIT_BUDGET_GATE",
    "EXIT_INTERRUPTED",
    "GATE_EXIT_CODES",
    "set_resume_hint",
]

EXIT_USER_ERROR = 1
EXIT_ACCURACY_GATE = 3
EXIT_BUDGET_GATE = 4
EXIT_INTERRUPTED = 130  # the shell convention for SIGINT
GATE_EXIT_CODES = {"passed": 0, "accuracy": EXIT_ACCURACY_GATE, "budget": EXIT_BUDGET_GATE}  # by gate verdict


def set_resume_hint(hint: str) -> None:
    """What the interrupted message tells the user about resuming (the running command's work folder)."""
    click.get_current_context().find_root().meta["agmc_resume_hint"] = hint


class ErrorBoundaryGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except AgmcError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            hint = ctx.meta.get("agmc_resume_hint")
            interrupted = click.ClickException(
                "interrupted; nothing partial was written" + (f". {hint}" if hint else "")
            )
            interrupted.exit_code = EXIT_INTERRUPTED
            raise interrupted from None
