"""One progress mechanism: long work reports ``ProgressEvent``s to a callback; only the CLI renders them.

Library code never prints. Fine-tuning (per batch and per epoch), evaluation (per batch), the search (per
episode) and ``compress`` (per stage, relaying the others) call a ``ProgressFn`` with events that all
answer the same questions: which stage, how far (``done`` of ``total`` ``unit``s), and one human line.
``cli/progress.py`` turns them into a live bar on a terminal and into periodic lines otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

__all__ = ["CountedProgress", "ProgressEvent", "ProgressFn", "StageEvent", "report"]


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


class CountedProgress:
    """Base of the events a counted run sends (``done`` of ``total``): a subclass names its stage and unit in
    its class line, ``class EvaluationProgress(CountedProgress, stage="evaluate", unit="image")``, and
    provides ``done``, ``total`` and ``message``; its ticks are not ``lasting`` unless it says so."""

    stage: ClassVar[str]
    unit: ClassVar[str]
    lasting: ClassVar[bool] = False

    def __init_subclass__(cls, *, stage: str, unit: str, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.stage, cls.unit = stage, unit


def report(progress: ProgressFn | None, event: ProgressEvent) -> None:
    """Send ``event`` when someone listens."""
    if progress is not None:
        progress(event)
