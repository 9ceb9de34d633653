"""Depth in the budget: which searched groups may delete their branch, and what deleting one saves.

In MACs mode a deleted branch costs nothing more than its inner group at fraction 0 already removes
(its convolutions' MACs). In latency mode that misses the per-operator overhead that dominates small
inputs, so the latency model is extended: the model with every offered branch deleted (widths
unchanged) is measured, and the latency the MACs-based fit does not explain is shared out per removed
operator and credited to each branch's group (``CostModel.removal_savings``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np

from agmc_onnx.analysis import ModelAnalysis
from agmc_onnx.cost.latency import measure_latency
from agmc_onnx.groups.find import ChannelGroup
from agmc_onnx.plan import PruningPlan, select_channels
from agmc_onnx.prune import apply_selection
from agmc_onnx.search.latency_model import LatencyFit

__all__ = ["searchable_removals", "fit_removal_savings"]

log = logging.getLogger(__name__)


def searchable_removals(analysis: ModelAnalysis, groups: Sequence[ChannelGroup]) -> frozenset[str]:
    """One searched group per removable branch (its first), so that a branch is deleted (and credited) once."""
    searched = {g.id for g in groups}
    chosen = set()
    for branch in analysis.depth.branches:
        handles = [g for g in branch.groups if g in searched]
        if handles:
            chosen.add(handles[0])
    return frozenset(chosen)


def fit_removal_savings(
    analysis: ModelAnalysis, fit: LatencyFit, removable: frozenset[str], min_seconds: float = 1.0
) -> LatencyFit:
    """``fit`` whose cost model credits each deleted branch with its operators' measured overhead."""
    if not removable:
        return fit
    # Every ratio is 0: whole branches go, so no channel ranking is needed.
    selection = select_channels(PruningPlan({g: 0.0 for g in removable}), analysis.groups, {}, analysis.depth)
    shallow, _ = apply_selection(analysis, selection)
    measured_ms = measure_latency(shallow, fit.target, min_seconds=min_seconds).median_ms
    macs = fit.cost_model.macs
    keep = np.array([0.0 if g in removable else 1.0 for g in macs.group_ids])
    predicted_ms = fit.cost_model.cost(keep)
    n_operators = {g: analysis.depth.branch_of(g).n_operators for g in removable}
    per_operator_ms = max(0.0, predicted_ms - measured_ms) / max(1, sum(n_operators.values()))
    savings = np.array([per_operator_ms * n_operators.get(g, 0) for g in macs.group_ids])
    log.info(
        "depth: every offered branch deleted measures %.3f ms, the MACs fit predicts %.3f ms: "
        "%.4f ms per removed operator",
        measured_ms,
        predicted_ms,
        per_operator_ms,
    )
    return dataclasses.replace(fit, cost_model=dataclasses.replace(fit.cost_model, removal_savings=savings))
