"""Pruning plans (keep ratio per group) and channel selections (kept unit indices per group), as data."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from agmc_onnx.documents import json_object
from agmc_onnx.errors import PlanError
from agmc_onnx.groups.depth import DepthAnalysis
from agmc_onnx.groups.find import ChannelGroup
from agmc_onnx.importance import IMPORTANCE_NAMES, ChannelScores

__all__ = [
    "PruningPlan",
    "ChannelSelection",
    "select_channels",
    "uniform_plan",
    "kept_unit_count",
    "on_round_grid",
]


@dataclass(frozen=True)
class PruningPlan:
    """Keep ratio per group (by group id or name). Ratios are fractions of units *kept*, in [0, 1].

    A ratio of 0 deletes the residual branch the group stands for (see ``agmc_onnx.groups.depth``);
    only removable groups accept it.
    """

    keep_ratios: Mapping[str, float]
    round_to: int = 1
    importance: str = "l1"
    metadata: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, ratio in self.keep_ratios.items():
            if not (isinstance(ratio, (int, float)) and 0.0 <= float(ratio) <= 1.0):
                raise PlanError(f"keep ratio of group '{key}' is {ratio!r}; it must be in [0, 1]")
        if int(self.round_to) < 1:
            raise PlanError(f"round_to is {self.round_to}; it must be a positive integer")
        if self.importance not in IMPORTANCE_NAMES:
            raise PlanError(
                f"importance '{self.importance}' is unknown; use one of {', '.join(IMPORTANCE_NAMES)}"
            )

    def to_json(self) -> str:
        return json.dumps(
            {
                "keep_ratios": dict(self.keep_ratios),
                "round_to": self.round_to,
                "importance": self.importance,
                "metadata": dict(self.metadata),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str, source: str = "plan") -> PruningPlan:
        data = json_object(
            text, PlanError, f"{source} is not valid JSON", f"{source} must hold a JSON object of group -> keep ratio"
        )
        if "keep_ratios" not in data:  # a bare {"g0": 0.5, ...} mapping is accepted too
            data = {"keep_ratios": data}
        ratios = data["keep_ratios"]
        if not isinstance(ratios, dict):
            raise PlanError(f"{source}: 'keep_ratios' must be an object of group -> keep ratio")
        return cls(
            keep_ratios={str(k): v for k, v in ratios.items()},
            round_to=int(data.get("round_to", 1)),
            importance=str(data.get("importance", "l1")),
            metadata=data.get("metadata", {}),
        )


@dataclass(frozen=True)
class ChannelSelection:
    """Kept unit indices per group id (sorted), and the residual branches deleted whole.

    Groups not listed keep everything; a group of a removed branch goes with its branch.
    """

    keep_units: Mapping[str, tuple[int, ...]]
    removed_branches: tuple[str, ...] = ()

    def dropped_roots(self, groups: Sequence[ChannelGroup]) -> set[int]:
        by_id = {g.id: g for g in groups}
        dropped: set[int] = set()
        for group_id, keep in self.keep_units.items():
            group = by_id[group_id]
            mask = np.ones(group.n_units, dtype=bool)
            mask[list(keep)] = False
            dropped.update(group.unit_roots[mask].tolist())
        return dropped

    def to_json(self) -> str:
        data: dict[str, object] = {k: list(v) for k, v in self.keep_units.items()}
        if self.removed_branches:
            data["removed_branches"] = list(self.removed_branches)
        return json.dumps(data)


def uniform_plan(groups: Sequence[ChannelGroup], keep_ratio: float, round_to: int = 1) -> PruningPlan:
    """The same keep ratio for every prunable group."""
    return PruningPlan({g.id: keep_ratio for g in groups if g.prunable}, round_to=round_to)


def kept_unit_count(group: ChannelGroup, keep_ratio: float, round_to: int = 1) -> int:
    """Units kept for ``keep_ratio``: rounded up so that the channel count is a multiple of ``round_to``."""
    n_keep = max(1, math.ceil(keep_ratio * group.n_units - 1e-9))
    if round_to > 1:
        step = round_to // math.gcd(round_to, group.unit_width)
        n_keep = min(group.n_units, math.ceil(n_keep / step) * step)
    return n_keep


def on_round_grid(group: ChannelGroup, n_units: int, round_to: int) -> bool:
    """Whether keeping ``n_units`` of ``group`` is a count ``round_to`` allows (its channels a multiple of it,
    or the whole group)."""
    return kept_unit_count(group, n_units / group.n_units, round_to) == n_units


def _resolve(groups: Sequence[ChannelGroup], key: str) -> ChannelGroup:
    for group in groups:
        if key in (group.id, group.name):
            return group
    known = ", ".join(g.id for g in groups[:8])
    raise PlanError(
        f"plan names unknown group '{key}' (known groups: {known}{', ...' if len(groups) > 8 else ''})"
    )


def select_channels(
    plan: PruningPlan,
    groups: Sequence[ChannelGroup],
    scores: ChannelScores,
    depth: DepthAnalysis | None = None,
) -> ChannelSelection:
    """Keep the highest-scoring units of each group (``scores`` from ``importance.channel_scores``);
    pinned groups may only keep everything.

    A keep ratio of 0 deletes the residual branch of a removable group (``depth`` says which).
    """
    keep_units: dict[str, tuple[int, ...]] = {}
    removed: list[str] = []
    for key, ratio in plan.keep_ratios.items():
        group = _resolve(groups, key)
        if float(ratio) == 0.0:
            branch = (depth or DepthAnalysis()).require_removable(group)
            if branch.id not in removed:
                removed.append(branch.id)
            continue
        if not group.prunable:
            if float(ratio) < 1.0:
                raise PlanError(f"group '{key}' cannot be pruned ({group.status}); give it keep ratio 1.0")
            continue
        n_keep = kept_unit_count(group, float(ratio), plan.round_to)
        if n_keep >= group.n_units:
            continue
        # Stable ordering: equal scores keep the lower index, so selections are reproducible.
        order = np.argsort(-np.asarray(scores[group.id]), kind="stable")
        keep_units[group.id] = tuple(sorted(int(i) for i in order[:n_keep]))
    return ChannelSelection(keep_units, tuple(removed))


def selection_from_indices(
    indices: Mapping[str, Sequence[int]], groups: Sequence[ChannelGroup]
) -> ChannelSelection:
    """An explicit kept-unit set per group, checked against the groups."""
    keep_units: dict[str, tuple[int, ...]] = {}
    for key, values in indices.items():
        group = _resolve(groups, key)
        keep = tuple(sorted(set(int(v) for v in values)))
        if not keep:
            raise PlanError(f"group '{key}' would keep no channels")
        if keep[0] < 0 or keep[-1] >= group.n_units:
            raise PlanError(f"group '{key}' has {group.n_units} units; index {keep[-1]} is out of range")
        if len(keep) < group.n_units and not group.prunable:
            raise PlanError(f"group '{key}' cannot be pruned ({group.status})")
        if len(keep) < group.n_units:
            keep_units[group.id] = keep
    return ChannelSelection(keep_units)


__all__.append("selection_from_indices")
