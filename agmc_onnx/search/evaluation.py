"""Where the search's rewards are computed: in this process, or in parallel on Ray workers.

An ``Evaluator`` scores one round of episodes (their channel selections, in episode order) and returns one
``RewardSample`` per episode. Both kinds give the same samples for the same selections: an identical kept
set is evaluated once, its first occurrence (in episode order) is the uncached one, later ones are cached.
``make_evaluator`` imports Ray only when parallel evaluation is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from agmc_onnx.plan import ChannelSelection
from agmc_onnx.progress import ProgressFn
from agmc_onnx.search.reward import RewardFn, RewardSample

__all__ = ["Evaluator", "LocalEvaluator", "WorkerNotice", "make_evaluator"]


class Evaluator(Protocol):
    cache: dict | None  # selection key -> reward, what a checkpoint stores (None: the reward does not cache)

    def evaluate(self, selections: Sequence[ChannelSelection], first_episode: int) -> list[RewardSample]: ...
    def close(self) -> None: ...


class LocalEvaluator:
    """One selection after the other, in this process (``workers`` = 1, no Ray)."""

    def __init__(self, reward_fn: RewardFn) -> None:
        self.reward_fn = reward_fn
        self.cache = getattr(reward_fn, "cache", None)

    def evaluate(self, selections: Sequence[ChannelSelection], first_episode: int) -> list[RewardSample]:
        return [self.reward_fn(selection) for selection in selections]

    def close(self) -> None:
        return None


@dataclass(frozen=True)
class WorkerNotice:
    """A progress event the CLI keeps: a worker was retried, or the workers share too few cores."""

    message: str
    stage: str = "search"
    done: None = None
    total: None = None
    unit: str = ""
    lasting: bool = True


def make_evaluator(
    reward_fn: RewardFn, workers: int, ray_address: str | None, progress: ProgressFn | None
) -> Evaluator:
    """In-process for one local worker; Ray actors otherwise (or whenever a cluster address is given)."""
    if workers == 1 and ray_address is None:
        return LocalEvaluator(reward_fn)
    from agmc_onnx.search.ray_pool import RayEvaluator

    return RayEvaluator(reward_fn, workers, ray_address, progress)
