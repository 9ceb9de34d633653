"""Renders the library's progress events on stderr: a live bar on a terminal, periodic lines otherwise."""

from __future__ import annotations

import sys
from typing import TextIO

import click
from tqdm import tqdm

from agmc_onnx.progress import ProgressEvent

__all__ = ["ProgressRenderer"]

_PLAIN_STEPS = 10  # lines per counted run when the output is not a terminal (CI logs stay readable)


class ProgressRenderer:
    """A ``ProgressFn``: one tqdm bar (rate, ETA) per counted run of a stage when ``stream`` is a terminal;
    otherwise a line at every tenth of the run. Announcements and lasting lines (an epoch's result) are
    always written; ``stage_prefix`` writes them as ``[stage] message``. Call ``close()`` at the end.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        stage_prefix: bool = False,
        min_interval_s: float = 0.1,
    ):
        self.stream = stream or sys.stderr
        self.min_interval_s = min_interval_s
        self.tty = self.stream.isatty() if tty is None else tty
        self.stage_prefix = stage_prefix
        self._bar: tqdm | None = None
        self._run: tuple[str, int] | None = None
        self._done = 0
        self._step = -1

    def __call__(self, event: ProgressEvent) -> None:
        if event.done is None or event.total is None:
            self.close()
            self._write(event)
            return
        run = (event.stage, event.total)
        if run != self._run or event.done < self._done:
            self.close()
            self._run, self._step = run, -1
        self._done = event.done
        if self.tty:
            self._advance_bar(event)
        else:
            step = event.done * _PLAIN_STEPS // max(event.total, 1)
            if step != self._step and not event.lasting:
                self._step = step
                self._write(event)
        if event.lasting:
            self._write(event)

    def _advance_bar(self, event: ProgressEvent) -> None:
        if self._bar is None:
            self._bar = tqdm(
                total=event.total,
                desc=event.stage,
                unit=event.unit or "it",
                file=self.stream,
                mininterval=self.min_interval_s,
            )
        self._bar.update(event.done - self._bar.n)
        self._bar.set_postfix_str(event.message, refresh=False)

    def _write(self, event: ProgressEvent) -> None:
        line = f"[{event.stage}] {event.message}" if self.stage_prefix else event.message
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            click.echo(line, file=self.stream)

    def __enter__(self) -> ProgressRenderer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._run, self._done = None, 0
