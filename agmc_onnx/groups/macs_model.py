"""Fast MACs of a pruned model from per-group kept fractions, without rewriting anything.

The search asks this thousands of times per episode (AMC's action wall), so it is a dense
matrix product: each weighted layer's kept input/output fraction is a fixed part plus the
share of each group's positions in its tensor times that group's kept fraction.

That product is exact when every unit of a group holds as many positions in each layer's tensors
(*uniform* units: ResNets, MobileNets, attention heads). Where units differ (a ShuffleNetV2 stream:
after a shuffle a unit may sit in the half a branch reads or in the half that passes through), what a
kept count costs depends on *which* units are kept. Such a group is *ranked*: its units are ordered
by the scores selection keeps by (``plan.select_channels``: highest first, ties by index), and the
model holds, per layer touching it, the share of the tensor's positions that the k best units hold,
for every k. A kept fraction f then reads entry f·n (interpolated between counts), so the prediction
is the count of the written model for every kept count and any importance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from agmc_onnx.graph.layers import WEIGHTED_OPS
from agmc_onnx.groups.flow import SliceConstant

__all__ = ["MacsModel", "RankedGroup"]


@dataclass(frozen=True)
class RankedGroup:
    """A group whose units hold unequal numbers of positions in the layers it touches.

    ``in_cumulative[r, k]``: share of layer ``rows[r]``'s input positions held by the k highest-ranked
    units (k = 0 … n_units); likewise ``out_cumulative`` for the layer's output.
    """

    column: int
    rows: np.ndarray
    in_cumulative: np.ndarray  # [len(rows), n_units + 1]
    out_cumulative: np.ndarray

    @property
    def n_units(self) -> int:
        return self.in_cumulative.shape[1] - 1

    def shares(self, keep_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """Kept input and output shares of ``rows`` when the group keeps ``keep_fraction`` of its units."""
        position = min(max(float(keep_fraction), 0.0), 1.0) * self.n_units
        low = min(int(np.floor(position + 1e-9)), self.n_units)
        step = position - low
        if step <= 1e-9 or low == self.n_units:
            return self.in_cumulative[:, low], self.out_cumulative[:, low]
        mix = lambda table: table[:, low] + step * (table[:, low + 1] - table[:, low])  # noqa: E731
        return mix(self.in_cumulative), mix(self.out_cumulative)


@dataclass(frozen=True)
class MacsModel:
    group_ids: tuple[str, ...]
    layer_names: tuple[str, ...]
    layer_macs: np.ndarray  # [n_layers]
    in_fixed: np.ndarray  # [n_layers] fraction of input positions in no prunable group
    in_share: np.ndarray  # [n_layers, n_groups]
    out_fixed: np.ndarray
    out_share: np.ndarray
    grouped: np.ndarray  # [n_layers] bool: grouped convs lose inputs only through their outputs
    ranked: tuple[RankedGroup, ...] = ()  # groups with unequal units (the class default: stored models)

    @classmethod
    def from_analysis(cls, analysis, scores: Mapping[str, np.ndarray] | None = None) -> MacsModel:
        """``scores``: per group id, the unit scores selection keeps by (``importance.channel_scores``).
        Only groups with unequal units read them; when None there, L1 (the default importance) ranks."""
        groups = analysis.prunable_groups
        n_atoms = len(analysis.flow.parent)
        column_of, unit_of = np.full(n_atoms, -1, dtype=np.int64), np.full(n_atoms, -1, dtype=np.int64)
        for col, group in enumerate(groups):
            column_of[group.unit_roots] = col
            unit_of[group.unit_roots] = np.arange(group.n_units)
        tensors_of = _layer_tensors(analysis)
        # Grouped convs pruned inside their groups lose inputs like any layer; whole-group ones through outputs.
        inside_groups = {e.node for e in analysis.flow.edits if isinstance(e, SliceConstant) and e.groups > 1}
        names, macs, grouped, counted_in, counted_out = [], [], [], [], []
        for name, layer in analysis.layers.items():
            if layer.op_type not in WEIGHTED_OPS or layer.macs == 0:
                continue
            in_name, out_name = tensors_of[name]
            names.append(name)
            macs.append(layer.macs)
            grouped.append(layer.groups > 1 and name not in inside_groups)
            counted_in.append(_unit_counts(analysis, in_name, column_of, unit_of))
            counted_out.append(_unit_counts(analysis, out_name, column_of, unit_of))
        n = len(groups)
        in_fixed, in_share = _linear_shares(counted_in, n)
        out_fixed, out_share = _linear_shares(counted_out, n)
        ranked = _ranked_groups(analysis, groups, counted_in, counted_out, scores)
        return cls(
            group_ids=tuple(g.id for g in groups),
            layer_names=tuple(names),
            layer_macs=np.asarray(macs, dtype=np.float64),
            in_fixed=in_fixed,
            in_share=in_share,
            out_fixed=out_fixed,
            out_share=out_share,
            grouped=np.asarray(grouped, dtype=bool),
            ranked=ranked,
        )

    @property
    def total(self) -> float:
        return float(self.layer_macs.sum())

    def keep_array(self, keep_fractions: np.ndarray | Mapping[str, float]) -> np.ndarray:
        if isinstance(keep_fractions, Mapping):
            return np.array([keep_fractions.get(g, 1.0) for g in self.group_ids], dtype=np.float64)
        return np.asarray(keep_fractions, dtype=np.float64)

    def kept_shares(self, keep_fractions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per weighted layer, the kept fraction of its input and of its output positions."""
        keep = np.asarray(keep_fractions, dtype=np.float64)
        linear = keep
        if self.ranked:
            linear = keep.copy()
            linear[[group.column for group in self.ranked]] = 0.0
        in_kept = self.in_fixed + self.in_share @ linear
        out_kept = self.out_fixed + self.out_share @ linear
        for group in self.ranked:
            kept_in, kept_out = group.shares(keep[group.column])
            in_kept[group.rows] += kept_in
            out_kept[group.rows] += kept_out
        return in_kept, out_kept

    def layer_fractions(self, keep_fractions: np.ndarray) -> np.ndarray:
        """Per weighted layer, the kept share of its MACs."""
        in_kept, out_kept = self.kept_shares(keep_fractions)
        return np.where(self.grouped, 1.0, in_kept) * out_kept

    def macs(self, keep_fractions: np.ndarray | Mapping[str, float]) -> float:
        """MACs when group i keeps ``keep_fractions[i]`` of its units (all other MACs unchanged)."""
        return float(np.sum(self.layer_macs * self.layer_fractions(self.keep_array(keep_fractions))))


def _layer_tensors(analysis) -> dict[str, tuple[str, str]]:
    out = {}
    for node in analysis.model.graph.node:
        out[node.name] = (node.input[0] if node.input else "", node.output[0] if node.output else "")
    return out


# A tensor's positions: (number of positions, positions in no prunable group, {column: positions per unit}).
_Counts = tuple[int, int, dict[int, np.ndarray]]


def _unit_counts(analysis, tensor: str, column_of: np.ndarray, unit_of: np.ndarray) -> _Counts:
    info = analysis.flow.tensors.get(tensor)
    if info is None or len(info) == 0:
        return 0, 0, {}
    roots = analysis.flow.roots(info.atoms)
    columns, units = column_of[roots], unit_of[roots]
    free = columns < 0
    per_column = {}
    for col in np.unique(columns[~free]).tolist():
        per_column[col] = np.bincount(units[columns == col])
    return len(roots), int(free.sum()), per_column


def _linear_shares(counted: list[_Counts], n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed share and per-group share of each layer's tensor (an untracked tensor is all fixed)."""
    fixed, share = np.ones(len(counted)), np.zeros((len(counted), n_groups))
    for row, (length, free, per_column) in enumerate(counted):
        if length == 0:
            continue
        fixed[row] = free / length
        for col, per_unit in per_column.items():
            share[row, col] = per_unit.sum() / length
    return fixed, share


def _ranked_groups(analysis, groups, counted_in, counted_out, scores) -> tuple[RankedGroup, ...]:
    """Groups whose units hold unequal position counts in some layer tensor, with their cumulative shares."""
    uneven = [col for col, g in enumerate(groups) if _uneven(col, g.n_units, counted_in + counted_out)]
    if not uneven:
        return ()
    if scores is None:
        from agmc_onnx.importance import channel_scores  # importance builds on groups: imported when needed

        scores = channel_scores(analysis, "l1")
    ranked = []
    for col in uneven:
        group = groups[col]
        order = np.argsort(-np.asarray(scores[group.id], dtype=np.float64), kind="stable")  # as selection
        rows = [r for r in range(len(counted_in)) if col in counted_in[r][2] or col in counted_out[r][2]]
        cumulative = [[_cumulative(c[r], col, group.n_units, order) for r in rows] for c in (counted_in, counted_out)]
        ranked.append(RankedGroup(col, np.asarray(rows, dtype=np.int64), *(np.asarray(c) for c in cumulative)))
    return tuple(ranked)


def _uneven(col: int, n_units: int, counted: list[_Counts]) -> bool:
    for _, _, per_column in counted:
        per_unit = per_column.get(col)
        if per_unit is not None and (len(per_unit) < n_units or np.any(per_unit != per_unit[0])):
            return True
    return False


def _cumulative(counts: _Counts, col: int, n_units: int, order: np.ndarray) -> np.ndarray:
    length, _, per_column = counts
    per_unit = np.zeros(n_units)
    if col in per_column:
        per_unit[: len(per_column[col])] = per_column[col]
    return np.concatenate([[0.0], np.cumsum(per_unit[order])]) / max(length, 1)
