"""One progress mechanism: long work reports ``ProgressEvent``s to a callback; only the CLI renders them.

Library code never prints. Fine-tuning (per batch and per epoch), evaluation (per batch), the search (per
episode) and ``compress`` (per stage, relaying the others) call a ``ProgressFn`` with events that all
answer the same questions: which stage, how far (``done`` of ``total`` ``unit``s), and one human line.
``cli/progress.py`` turns them into a live bar on a terminal and into periodic lines otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["ProgressEvent", "ProgressFn", "StageEvent", "report"]


class ProgressEvent(Protocol):
    """What every progress event says."""

    @property
    def stage(self) -> str:
        """The work it belongs to: "search", "finetune", "evaluate", or a ``compress`` stage."""

    @property
    def done(self) -> int | None:
        """Steps finished, or None for an announcement without a counter."""

    @property
    def total(self) -> int | None:
        """Steps in this run of the stage (a new count starts a new bar)."""

    @property
    def unit(self) -> str:
        """What a step is: "episode", "batch", "image"."""

    @property
    def message(self) -> str:
        """One line for a person."""

    @property
    def lasting(self) -> bool:
        """True when the line is worth keeping in a log (an epoch's result), not only a tick."""


ProgressFn = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class StageEvent:
    """An announcement: a stage begins or says what it is about to do."""

    stage: str
    message: str
    done: None = None
    total: None = None
    unit: str = ""
    lasting: bool = True


def report(progress: ProgressFn | None, event: ProgressEvent) -> None:
    """Send ``event`` when someone listens."""
    if progress is not None:
        progress(event)
