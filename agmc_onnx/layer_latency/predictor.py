"""Whole-model latency from the per-operator tables: overhead + scale · Σ table entries at each layer's
kept widths + macs_ms · kept fraction of the MACs. The three coefficients are fitted per model by least
squares on the full model and a few pruned ones (fast-step plans), each timed paired against the full
model: the overhead holds what does not shrink with the widths (session dispatch, the input and the
classifier's fixed part), the scale how much of a lone operator's gain survives inside the network (layout
reorders shared between neighbours, cache effects), the MACs term what the tables do not hold and shrinks
with the widths (element-wise operators, pooling, Quantize/DequantizeLinear glue). A layer a deleted branch
leaves without input or output channels costs nothing. With scale 1 and no MACs term it is the plain
sum + overhead."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from agmc_onnx.groups.macs_model import MacsModel
from agmc_onnx.layer_latency.signature import LayerSlot
from agmc_onnx.layer_latency.table import SignatureTable, TableIdentity

__all__ = ["LayerLatencyModel", "GroupStaircase", "lookup"]


@dataclass(frozen=True)
class GroupStaircase:
    """A group's predicted latency at each kept unit count (the others at full width); ``fast_counts``
    are the counts no larger count beats, the steps worth stopping on."""

    group_id: str
    counts: tuple[int, ...]
    latency_ms: tuple[float, ...]
    fast_counts: tuple[int, ...]


def lookup(table: SignatureTable, c_in: int, c_out: int, in_axis: Sequence[int], out_axis: Sequence[int]) -> float:
    """The measured entry, else bilinear interpolation on the measured grid ``in_axis × out_axis``."""
    exact = table.entries.get((c_in, c_out))
    if exact is not None:
        return exact
    if table.signature.per_group is not None:  # grouped: one axis, kept conv groups (c_in == c_out)
        g0, g1, w = _bracket(in_axis, c_in)
        return float((1 - w) * table.entries[(g0, g0)] + w * table.entries[(g1, g1)])
    i0, i1, wi = _bracket(in_axis, c_in)
    o0, o1, wo = _bracket(out_axis, c_out)
    e = table.entries
    low = (1 - wo) * e[(i0, o0)] + wo * e[(i0, o1)]
    high = (1 - wo) * e[(i1, o0)] + wo * e[(i1, o1)]
    return float((1 - wi) * low + wi * high)


def _bracket(axis: Sequence[int], value: int) -> tuple[int, int, float]:
    axis = list(axis)
    if len(axis) == 1:
        return axis[0], axis[0], 0.0
    position = int(np.clip(np.searchsorted(axis, value), 1, len(axis) - 1))
    low, high = axis[position - 1], axis[position]
    return low, high, (value - low) / (high - low)  # outside the grid: linear extrapolation


@dataclass(frozen=True)
class LayerLatencyModel:
    """A cost model for the action wall: same interface as ``search.budget.CostModel``."""

    macs: MacsModel
    slots: tuple[LayerSlot, ...]
    tables: Mapping[str, SignatureTable]  # signature digest -> table
    axes: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]]  # layer name -> (in axis, out axis)
    overhead_ms: float
    measured_full_ms: float
    identity: TableIdentity
    untabulated: tuple[str, ...] = ()
    staircases: tuple[GroupStaircase, ...] = ()
    scale: float = 1.0
    calibration_ms: tuple[float, ...] = ()  # measured calibration models (the full one first), paired
    macs_ms: float = 0.0  # ms per kept fraction of the MACs
    reference_ms: float | None = None  # a reference model (the fp32 original) in this model's time base
    # what the coefficients were fitted on: ((Σ table, MACs fraction), ratio to the full model, weight)
    calibration_points: tuple[tuple[tuple[float, float], float, float], ...] = ()
    unit: str = "ms (table)"

    def layer_ms(self, keep_fractions: np.ndarray) -> np.ndarray:
        keep = np.asarray(keep_fractions, dtype=np.float64)
        values = []
        shares = self.macs.kept_shares(keep)
        for slot in self.slots:
            c_in, c_out = slot.counts(shares)
            in_axis, out_axis = self.axes[slot.name]
            table = self.tables[slot.signature.digest]
            deleted = slot.deleted(shares)
            values.append(0.0 if deleted else lookup(table, c_in, c_out, in_axis, out_axis))
        return np.asarray(values)

    def features(self, keep_fractions: np.ndarray) -> tuple[float, float]:
        """(Σ table entries, kept fraction of the MACs): what the coefficients multiply."""
        keep = np.asarray(keep_fractions, dtype=np.float64)
        return float(self.layer_ms(keep).sum()), float(self.macs.macs(keep) / self.macs.total)

    def cost(self, keep_fractions: np.ndarray) -> float:
        table_ms, macs_fraction = self.features(keep_fractions)
        return float(self.overhead_ms + self.scale * table_ms + self.macs_ms * macs_fraction)

    def plain(self, keep_fractions: np.ndarray | Mapping[str, float]) -> float:
        """The plain prediction: the full model's measured latency minus what the tables say the cuts save."""
        keep = self.keep_array(keep_fractions)
        return float(self.measured_full_ms - self.layer_ms(np.ones_like(keep)).sum() + self.layer_ms(keep).sum())

    def keep_array(self, keep_fractions: np.ndarray | Mapping[str, float]) -> np.ndarray:
        if isinstance(keep_fractions, Mapping):
            return np.array([keep_fractions.get(g, 1.0) for g in self.macs.group_ids])
        return np.asarray(keep_fractions, dtype=np.float64)

    def predict(self, keep_fractions: np.ndarray | Mapping[str, float]) -> float:
        return self.cost(self.keep_array(keep_fractions))

    @property
    def full_cost(self) -> float:
        return self.cost(np.ones(len(self.macs.group_ids)))

    def fast_counts(self, group_id: str) -> tuple[int, ...] | None:
        for staircase in self.staircases:
            if staircase.group_id == group_id:
                return staircase.fast_counts
        return None

    def as_json(self) -> dict:
        return {
            "identity": asdict(self.identity),
            "measured_full_ms": self.measured_full_ms,
            "overhead_ms": self.overhead_ms,
            "scale": self.scale,
            "macs_ms": self.macs_ms,
            "reference_ms": self.reference_ms,
            "calibration_ms": list(self.calibration_ms),
            "predicted_full_ms": self.full_cost,
            "untabulated_layers": list(self.untabulated),
            "layers": [
                {"name": s.name, "signature": s.signature.describe(), "digest": s.signature.digest,
                 "in_channels": s.in_channels, "out_channels": s.out_channels}
                for s in self.slots
            ],
            "groups": [
                {"group": s.group_id, "counts": list(s.counts), "latency_ms": list(s.latency_ms),
                 "fast_counts": list(s.fast_counts)}
                for s in self.staircases
            ],
            "tables": {
                digest: {"signature": t.signature.describe(),
                         "entries": [[ci, co, ms] for (ci, co), ms in sorted(t.entries.items())]}
                for digest, t in self.tables.items()
            },
        }
