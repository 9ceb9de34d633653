"""The pruning environment: one step per prunable channel group, in topological order.

An action is a number in [0, 1], mapped to keep ratio ``lower_bound + (1 − lower_bound)·action`` (or, centred,
piecewise linearly through a centre keep ratio at action 0.5), turned
into a kept unit count under ``round_to`` and clipped by the action wall. With depth (a ``depth_threshold``), a
removable group's actions below the threshold delete its residual branch (kept count 0) and the rest of
the range spans the keep ratios. The episode ends with kept
counts that meet the budget; the reward is scored by a ``RewardFn`` on the resulting selection.

Budget-relative actions (``budget_relative``): each step's centre is the largest keep ratio that, taken by
this and every later group, meets the budget left after the earlier groups' counts. Action 0.5 everywhere
is then the uniform plan, and a step that keeps more than its share lowers the centre of every later step:
its cost falls on the agent's own later actions, not only on the wall.

Rescaled episodes (``rescale``): steps are not clipped by the wall; when the episode ends, every group's keep
ratio is multiplied by one factor, the largest that meets the budget. The agent then chooses the plan's shape
(which groups keep relatively more) and the budget is shared by all groups: with the wall, whatever the early
steps over-keep is taken from the last groups alone, and a learned policy that keeps too much early drives
them to the lower bound. An actor that keeps everything gets the uniform plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agmc_onnx.errors import PlanError
from agmc_onnx.groups.depth import DepthAnalysis
from agmc_onnx.groups.find import ChannelGroup
from agmc_onnx.importance import ChannelScores
from agmc_onnx.plan import ChannelSelection, PruningPlan, select_channels
from agmc_onnx.search.budget import ActionWall, uniform_keep_ratio

__all__ = ["PruningEnv", "EpisodeResult"]


@dataclass(frozen=True)
class EpisodeResult:
    keep_counts: tuple[int, ...]
    actions: tuple[float, ...]  # the effective actions in [0, 1], after the wall
    cost_fraction: float  # cost of the pruned model / cost of the original (MACs, or predicted latency)
    corrected: bool  # the counts changed when the episode ended: shrunk to meet the budget, or rescaled onto it


class PruningEnv:
    """State machine of one episode. ``dynamic()`` gives (MACs reduced so far, MACs still removable,
    previous action), each as a fraction of the original cost."""

    def __init__(
        self,
        groups: Sequence[ChannelGroup],
        wall: ActionWall,
        importance: str = "l1",
        center_keep_ratio: float | None = None,
        depth_threshold: float | None = None,
        depth: DepthAnalysis | None = None,
        scores: ChannelScores | None = None,
        budget_relative: bool = False,
        rescale: bool = False,
    ) -> None:
        if budget_relative and rescale:
            raise PlanError("budget-relative actions follow the wall step by step; they cannot be rescaled")
        self.groups = tuple(groups)
        self.depth_threshold = depth_threshold
        self.depth = depth
        self.scores = scores  # per-unit scores under ``importance``; needed by ``selection``
        self.center_keep_ratio = center_keep_ratio
        self.budget_relative = budget_relative
        self.rescale = rescale
        self._centers: dict[tuple[int, bytes], float] = {}  # budget-relative centres by (step, earlier counts)
        self.wall = wall
        self.importance = importance
        self.reset()

    @property
    def n_steps(self) -> int:
        return len(self.groups)

    def reset(self) -> None:
        self.step_index = 0
        self.counts = self.wall.n_units.copy()
        self.actions: list[float] = []
        self._centers = {}

    def center_of(self, step: int | None) -> float | None:
        """Keep ratio that action 0.5 means at ``step`` (None: no centre, the plain linear mapping)."""
        if not self.budget_relative:
            return self.center_keep_ratio
        if step is None:
            raise PlanError("budget-relative actions have a centre per step; name the step")
        key = (step, self.counts[:step].tobytes())
        if key not in self._centers:
            self._centers[key] = uniform_keep_ratio(self.wall, counts=self.counts, step=step)[0]
        return self._centers[key]

    def keep_ratio_of(self, action: float, step: int | None = None) -> float:
        """Linear from the lower bound (action 0) to 1 (action 1); with a centre keep ratio c, piecewise
        linear so that action 0.5 means c (an untrained actor, whose output is near 0.5, starts there)."""
        lower, action = self.wall.lower_bound, float(np.clip(action, 0.0, 1.0))
        center = self.center_of(step)
        if center is None:
            return lower + (1.0 - lower) * action
        if action <= 0.5:
            return lower + (center - lower) * 2.0 * action
        return center + (1.0 - center) * 2.0 * (action - 0.5)

    def removable(self, step: int) -> bool:
        """Whether an action below the depth threshold deletes group ``step``'s residual branch."""
        return self.depth_threshold is not None and int(self.wall.choices[step][0]) == 0

    def desired_count(self, step: int, action: float) -> int:
        """Kept count asked for by ``action``: for a removable group, [0, threshold) deletes its branch and
        [threshold, 1] spans the keep ratios; otherwise the whole range spans them."""
        action = float(np.clip(action, 0.0, 1.0))
        if self.removable(step):
            threshold = float(self.depth_threshold)
            if action < threshold:
                return 0
            action = (action - threshold) / max(1.0 - threshold, 1e-12)
        return self.wall.count_for(step, self.keep_ratio_of(action, step))

    def action_of(self, count: int, step: int) -> float:
        """The action that reproduces ``count`` for group ``step`` (inverse of ``desired_count``)."""
        if not self.removable(step):
            return self._width_action(count, step)
        threshold = float(self.depth_threshold)
        return 0.0 if count == 0 else threshold + (1.0 - threshold) * self._width_action(count, step)

    def _width_action(self, count: int, step: int) -> float:
        lower = self.wall.lower_bound
        keep_ratio = count / self.groups[step].n_units
        if lower >= 1.0:
            return 1.0
        center = self.center_of(step)
        if center is None:
            return float(np.clip((keep_ratio - lower) / (1.0 - lower), 0.0, 1.0))
        if keep_ratio <= center:
            return float(np.clip(0.5 * (keep_ratio - lower) / max(center - lower, 1e-12), 0.0, 0.5))
        return float(np.clip(0.5 + 0.5 * (keep_ratio - center) / max(1.0 - center, 1e-12), 0.5, 1.0))

    def dynamic(self) -> np.ndarray:
        t, wall = self.step_index, self.wall
        full = wall.full_cost
        rest_full = wall.cost(self.counts)  # later groups are still at their full counts
        rest_min = wall.cost(np.concatenate([self.counts[:t], wall.min_counts[t:]]))
        previous = self.actions[-1] if self.actions else 1.0
        return np.array([1.0 - rest_full / full, (rest_full - rest_min) / full, previous], dtype=np.float32)

    def step(self, action: float) -> float:
        """Apply ``action`` to the current group; returns the effective action after rounding and the wall."""
        t = self.step_index
        desired = self.desired_count(t, action)
        count = desired if self.rescale else min(desired, self.wall.max_count(t, self.counts))
        self.counts[t] = count
        effective = self.action_of(count, t)
        self.actions.append(effective)
        self.step_index += 1
        return effective

    def finish(self) -> EpisodeResult:
        """Counts of the finished episode: rescaled onto the budget, or corrected if rounding left it unmet."""
        counts = self.counts
        if self.rescale:
            counts = self.wall.rescale(counts)
            corrected = not np.array_equal(counts, self.counts)
            self.counts = counts
        else:
            corrected = not self.wall.meets(counts)
            if corrected:
                counts = self.counts = self.wall.enforce(counts)  # budget-relative centres follow the final counts
        return EpisodeResult(
            keep_counts=tuple(int(c) for c in counts),
            actions=tuple(self.action_of(int(c), i) for i, c in enumerate(counts)),
            cost_fraction=self.wall.cost(counts) / self.wall.full_cost,
            corrected=corrected,
        )

    def plan(self, keep_counts: Sequence[int], metadata: dict | None = None) -> PruningPlan:
        """The plan whose selection keeps exactly ``keep_counts`` units per group."""
        keep_ratios = {g.id: int(c) / g.n_units for g, c in zip(self.groups, keep_counts)}
        return PruningPlan(
            keep_ratios, round_to=self.wall.plan_round_to, importance=self.importance, metadata=metadata or {}
        )

    def selection(self, keep_counts: Sequence[int]) -> ChannelSelection:
        if self.scores is None:
            raise PlanError("the pruning environment was built without channel scores; it cannot select")
        return select_channels(self.plan(keep_counts), self.groups, self.scores, self.depth)
