"""Budgets in MACs (or in a MACs-weighted latency model) and AMC's action wall that keeps them reachable.

The wall works in *kept unit counts*, the only values ``round_to`` allows, so what the agent is told is
exactly what the final ``PruningPlan`` will produce.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from agmc_onnx.errors import BudgetUnreachableError, PreconditionError
from agmc_onnx.groups.find import ChannelGroup
from agmc_onnx.groups.macs_model import MacsModel
from agmc_onnx.plan import kept_unit_count, on_round_grid

__all__ = ["CostModel", "ActionWall", "allowed_counts", "uniform_keep_ratio", "one_budget", "macs_wall"]


@dataclass(frozen=True)
class CostModel:
    """cost = constant + Σ_layers weight·MACs·(kept input fraction)·(kept output fraction).

    With unit weights and no constant it is the exact MACs count; a latency model sets per-layer
    milliseconds-per-MAC weights and a fixed overhead. Monotone in every group's kept fraction.
    """

    macs: MacsModel
    layer_weights: np.ndarray
    constant: float = 0.0
    unit: str = "MACs"
    # per cost-model group: cost saved beyond its MACs when the group is at 0 (its residual branch deleted,
    # e.g. the per-operator overhead of a latency model); None when depth is not searched
    removal_savings: np.ndarray | None = None

    @classmethod
    def of_macs(cls, macs: MacsModel) -> CostModel:
        return cls(macs, np.ones_like(macs.layer_macs))

    def layer_fractions(self, keep_fractions: np.ndarray) -> np.ndarray:
        """Per weighted layer, the kept share of its MACs."""
        return self.macs.layer_fractions(keep_fractions)

    def cost(self, keep_fractions: np.ndarray) -> float:
        keep = np.asarray(keep_fractions, dtype=np.float64)
        total = self.constant + np.sum(self.layer_weights * self.macs.layer_macs * self.layer_fractions(keep))
        if self.removal_savings is not None:
            total -= float(self.removal_savings @ (keep <= 0.0))
        return float(total)

    @property
    def full_cost(self) -> float:
        return self.cost(np.ones(len(self.macs.group_ids)))


def allowed_counts(group: ChannelGroup, lower_bound: float, round_to: int, removable: bool = False) -> np.ndarray:
    """Every kept unit count a keep ratio in [lower_bound, 1] can give under ``round_to`` (ascending);
    with ``removable``, 0 too (the group's residual branch deleted)."""
    lowest = kept_unit_count(group, lower_bound, round_to)
    counts = {kept_unit_count(group, n / group.n_units, round_to) for n in range(lowest, group.n_units + 1)}
    return np.array(([0] if removable else []) + sorted(counts), dtype=np.int64)


def one_budget(flops_keep_ratio: float | None, latency_keep_ratio: float | None) -> tuple[str, float]:
    """``("flops" | "latency", kept fraction)``: exactly one of the two budgets, a kept fraction in (0, 1]."""
    if (flops_keep_ratio is None) == (latency_keep_ratio is None):
        raise PreconditionError("give exactly one budget: a FLOPs (MACs) keep ratio or a latency keep ratio")
    kind, keep = ("flops", flops_keep_ratio) if flops_keep_ratio is not None else ("latency", latency_keep_ratio)
    if not 0.0 < float(keep) <= 1.0:
        raise PreconditionError(f"{kind} budget {keep} must be a kept fraction in (0, 1], e.g. 0.5 for 2× fewer")
    return kind, float(keep)


class ActionWall:
    """Clip each step's kept count so the target stays reachable with all later groups at their minimum.

    Groups in ``removable`` may also take count 0 (depth: their residual branch is deleted); their
    minimum is then 0, so the wall assumes later branches can go when it bounds earlier steps.
    """

    def __init__(
        self,
        groups: Sequence[ChannelGroup],
        cost_model: CostModel,
        target_cost: float,
        lower_bound: float = 0.2,
        round_to: int = 1,
        removable: frozenset[str] = frozenset(),
        step_counts: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        """``step_counts``: per group id, the only kept counts allowed (a latency staircase's fast steps),
        replacing ``round_to`` for that group; counts under the lower bound are dropped."""
        if {g.id for g in groups} != set(cost_model.macs.group_ids):
            raise PreconditionError("the action wall's groups differ from the cost model's prunable groups")
        self.groups = tuple(groups)
        self.cost_model = cost_model
        self.target_cost = float(target_cost)
        self.lower_bound = lower_bound
        self.round_to = round_to
        # A plan of a table wall's counts keeps them exactly as costed and timed (its fast steps are filtered onto
        # round_to's grid below, so re-rounding would not move them; with 1 the plan does not rely on that).
        self.plan_round_to = 1 if step_counts else round_to
        order = {gid: i for i, gid in enumerate(cost_model.macs.group_ids)}
        self._columns = np.array([order[g.id] for g in self.groups])
        self.n_units = np.array([g.n_units for g in self.groups], dtype=np.int64)
        self.choices = tuple(
            _step_choices(g, step_counts[g.id], lower_bound, g.id in removable, round_to)
            if step_counts and g.id in step_counts
            else allowed_counts(g, lower_bound, round_to, g.id in removable)
            for g in self.groups
        )
        self.min_counts = np.array([c[0] for c in self.choices], dtype=np.int64)
        self.full_cost = cost_model.full_cost
        self.min_cost = self.cost(self.min_counts)
        if self.min_cost > self.target_cost * (1 + 1e-12):
            raise BudgetUnreachableError(
                f"budget unreachable: the target is {self.target_cost / self.full_cost:.1%} of the original "
                f"{cost_model.unit}, but even every prunable group at the lower bound {lower_bound} "
                f"(round_to {round_to}) keeps {self.min_cost / self.full_cost:.1%}; raise the target, lower "
                "--lower-bound, or use a smaller --round-to"
            )

    def fractions(self, counts: np.ndarray) -> np.ndarray:
        """Kept fraction per cost-model column for kept counts given in search order."""
        keep = np.ones(len(self._columns))
        keep[self._columns] = np.asarray(counts, dtype=np.float64) / self.n_units
        return keep

    def cost(self, counts: np.ndarray) -> float:
        return self.cost_model.cost(self.fractions(counts))

    def max_count(self, step: int, counts: np.ndarray) -> int:
        """Largest allowed count of group ``step``: earlier groups at ``counts``, later ones at minimum."""
        trial = np.concatenate([counts[:step], [0], self.min_counts[step + 1 :]]).astype(np.int64)
        choices = self.choices[step]
        low, high = 0, len(choices) - 1  # choices[0] always fits by construction (induction on the steps)
        while low < high:
            middle = (low + high + 1) // 2
            trial[step] = choices[middle]
            if self.cost(trial) <= self.target_cost:
                low = middle
            else:
                high = middle - 1
        return int(choices[low])

    def count_for(self, step: int, keep_ratio: float) -> int:
        """Kept count of group ``step`` for a desired keep ratio, under round_to and the lower bound."""
        desired = kept_unit_count(self.groups[step], max(keep_ratio, self.lower_bound), 1)
        choices = self.choices[step]  # the smallest allowed count that keeps at least the desired ratio
        return int(choices[min(np.searchsorted(choices, desired), len(choices) - 1)])

    def enforce(self, counts: np.ndarray) -> np.ndarray:
        """Shrink the largest-keep-ratio groups, one allowed step at a time, until the target is met."""
        counts = np.asarray(counts, dtype=np.int64).copy()
        while self.cost(counts) > self.target_cost:
            ratios = np.where(counts > self.min_counts, counts / self.n_units, -1.0)
            step = int(np.argmax(ratios))
            if ratios[step] < 0:
                raise BudgetUnreachableError(
                    "budget correction failed: every group is already at its minimum"
                )
            choices = self.choices[step]
            counts[step] = choices[np.searchsorted(choices, counts[step]) - 1]
        return counts

    def meets(self, counts: np.ndarray) -> bool:
        return self.cost(counts) <= self.target_cost

    def rescale(self, counts: np.ndarray, iterations: int = 40) -> np.ndarray:
        """Every group's keep ratio times one factor, the largest whose counts meet the target (bisection).

        A plan keeps its shape — which groups keep relatively more — and the budget's cost is shared by all
        groups instead of falling on the last ones, as the wall's clipping makes it. Groups at count 0 (a
        deleted residual branch) stay deleted; ratios are capped at 1 and floored at the lower bound.
        """
        counts = np.asarray(counts, dtype=np.int64)
        ratios = counts / self.n_units

        def scaled(factor: float) -> np.ndarray:
            return np.array(
                [0 if c == 0 else self.count_for(i, min(1.0, factor * r))
                 for i, (c, r) in enumerate(zip(counts, ratios))],
                dtype=np.int64,
            )

        kept = ratios[counts > 0]
        low, high = 0.0, (1.0 / float(kept.min())) if len(kept) else 1.0
        if self.meets(scaled(high)):
            return scaled(high)
        for _ in range(iterations):  # scaled(0) is every group at its minimum, which the wall's check allows
            middle = (low + high) / 2
            if self.meets(scaled(middle)):
                low = middle
            else:
                high = middle
        return scaled(low)


def _step_choices(
    group: ChannelGroup, counts: Sequence[int], lower_bound: float, removable: bool, round_to: int = 1
) -> np.ndarray:
    """The fast steps at or above the lower bound whose channel counts are multiples of ``round_to`` (a count
    fast for one operator alone, 5 of 16 say, can make its neighbours re-lay out their data), and the full
    width."""
    lowest = kept_unit_count(group, lower_bound, 1)
    kept = sorted({int(c) for c in counts if lowest <= c <= group.n_units and on_round_grid(group, int(c), round_to)}
                  | {group.n_units})
    return np.array(([0] if removable else []) + kept, dtype=np.int64)


def uniform_keep_ratio(
    wall: ActionWall, tolerance: float = 1e-4, counts: np.ndarray | None = None, step: int = 0
) -> tuple[float, np.ndarray]:
    """Largest single keep ratio for groups ``step`` onwards that meets the target (bisection), groups before
    ``step`` kept at ``counts``; with its counts. At step 0 it is the uniform plan's keep ratio."""
    prefix = np.asarray(counts[:step] if counts is not None else [], dtype=np.int64)

    def counts_at(keep_ratio: float) -> np.ndarray:
        rest = [wall.count_for(i, keep_ratio) for i in range(step, len(wall.groups))]
        return np.concatenate([prefix, np.array(rest, dtype=np.int64)])

    low, high = wall.lower_bound, 1.0
    if wall.meets(counts_at(high)):
        return high, counts_at(high)
    while high - low > tolerance:
        middle = (low + high) / 2
        if wall.meets(counts_at(middle)):
            low = middle
        else:
            high = middle
    return low, counts_at(low)


def macs_wall(
    analysis,
    groups: Sequence[ChannelGroup],
    keep_ratio: float,
    lower_bound: float,
    round_to: int,
    removable: frozenset[str] = frozenset(),
    scores: Mapping[str, np.ndarray] | None = None,
) -> ActionWall:
    """The action wall of a MACs budget: ``keep_ratio`` of the analysed model's MACs; ``scores``: the unit
    scores selection keeps by (``importance.channel_scores``; default L1)."""
    cost = CostModel.of_macs(MacsModel.from_analysis(analysis, scores))
    return ActionWall(groups, cost, keep_ratio * cost.full_cost, lower_bound, round_to, removable)


def fill_greedily(
    counts: Sequence[int], choices: Sequence[np.ndarray], n_units: np.ndarray, meets: Callable[[np.ndarray], bool]
) -> np.ndarray:
    """Raise one entry at a time to its next allowed count (smallest kept fraction first, ties by position)
    while ``meets`` holds: a uniform plan on coarse steps can leave much of a budget unused."""
    counts = np.array(counts, dtype=np.int64)
    raised = True
    while raised:
        raised = False
        for i in np.argsort(counts / np.asarray(n_units), kind="stable"):
            bigger = np.asarray(choices[i])[np.asarray(choices[i]) > counts[i]]
            if len(bigger) == 0:
                continue
            trial = counts.copy()
            trial[i] = bigger[0]
            if meets(trial):
                counts, raised = trial, True
                break
    return counts
