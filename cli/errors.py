"""One error boundary: library errors become one line on stderr and exit 1 (``--debug`` re-raises)."""

from __future__ import annotations

import click

from agmc_onnx.errors import AgmcError

__all__ = ["ErrorBoundaryGroup", "EXIT_USER_ERROR", "EXIT_INTERRUPTED"]

EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130  # the shell convention for SIGINT


class ErrorBoundaryGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except AgmcError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            interrupted = click.ClickException("interrupted; nothing partial was written")
            interrupted.exit_code = EXIT_INTERRUPTED
            raise interrupted from None
