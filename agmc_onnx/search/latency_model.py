"""A latency model for the budget: onnxruntime medians of the original and a few uniformly pruned
variants, fitted as latency ≈ overhead + slope_dense·MACs(dense layers) + slope_grouped·MACs(grouped).

Dense and depthwise/grouped convolutions get separate slopes because uniform pruning shrinks dense MACs
quadratically but grouped MACs linearly, and memory-bound depthwise layers cost more per MAC. The model
is a ``CostModel``, so the action wall enforces a latency target exactly as it does a MACs target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agmc_onnx.analysis import ModelAnalysis
from agmc_onnx.cost.latency import measure_latency
from agmc_onnx.groups.find import ChannelGroup
from agmc_onnx.groups.macs_model import MacsModel
from agmc_onnx.importance import ChannelScores, channel_scores
from agmc_onnx.plan import kept_unit_count, select_channels, uniform_plan
from agmc_onnx.prune import apply_selection
from agmc_onnx.search.budget import CostModel

__all__ = ["LatencyFit", "fit_latency_model"]


@dataclass(frozen=True)
class LatencyFit:
    cost_model: CostModel
    original_ms: float
    keep_ratios: tuple[float, ...]  # uniform variants measured
    measured_ms: tuple[float, ...]
    predicted_ms: tuple[float, ...]
    target: str

    @property
    def max_relative_error(self) -> float:
        measured, predicted = np.array(self.measured_ms), np.array(self.predicted_ms)
        return float(np.max(np.abs(predicted - measured) / measured))


def _class_macs(cost: CostModel, keep: np.ndarray) -> np.ndarray:
    shares = cost.macs.layer_macs * cost.layer_fractions(keep)
    grouped = cost.macs.grouped
    return np.array([shares[~grouped].sum(), shares[grouped].sum()])


def fit_latency_model(
    analysis: ModelAnalysis,
    groups: Sequence[ChannelGroup],
    target: str,
    round_to: int,
    keep_ratios: Sequence[float] = (1.0, 0.8, 0.6, 0.4, 0.25),
    min_seconds: float = 1.0,
    scores: ChannelScores | None = None,
) -> LatencyFit:
    """Measure the uniform variants on ``target`` and fit the model (least squares, slopes kept ≥ 0).

    ``scores``: the unit scores the search selects by (default: L1), for the measured variants and the
    MACs model alike."""
    macs = MacsModel.from_analysis(analysis, scores)
    unit_cost = CostModel.of_macs(macs)
    order = {gid: i for i, gid in enumerate(macs.group_ids)}
    rows, measured = [], []
    for keep_ratio in keep_ratios:
        keep = np.ones(len(order))
        for group in groups:
            keep[order[group.id]] = kept_unit_count(group, keep_ratio, round_to) / group.n_units
        model = analysis.model
        if keep_ratio < 1.0:
            plan = uniform_plan(groups, keep_ratio, round_to)
            selection = select_channels(plan, analysis.groups, scores or channel_scores(analysis, plan.importance))
            model, _ = apply_selection(analysis, selection)
        measured.append(measure_latency(model, target, min_seconds=min_seconds).median_ms)
        rows.append(_class_macs(unit_cost, keep))
    features = np.column_stack([np.ones(len(rows)), np.array(rows)])
    active = [0] + [c for c in (1, 2) if features[:, c].max() > 0]
    coefficients = np.zeros(3)
    while True:
        solution, *_ = np.linalg.lstsq(features[:, active], np.array(measured), rcond=None)
        negative = [c for c, value in zip(active, solution) if c > 0 and value < 0]
        if not negative:
            coefficients[active] = solution
            break
        active.remove(negative[0])
    weights = np.where(macs.grouped, coefficients[2], coefficients[1])
    cost_model = CostModel(macs, weights, constant=float(coefficients[0]), unit="ms (predicted)")
    predicted = tuple(float(v) for v in features @ coefficients)
    return LatencyFit(cost_model, measured[0], tuple(keep_ratios), tuple(measured), predicted, target)
