"""The CI gate (budget met, accuracy drop within bounds) and the per-group channel table of a report."""

from __future__ import annotations

from agmc_onnx.analysis import ModelAnalysis
from agmc_onnx.compress.report import GateResult
from agmc_onnx.importance import channel_scores
from agmc_onnx.plan import PruningPlan, select_channels

__all__ = ["evaluate_gate", "group_channels"]

_BUDGET_SLACK = 1e-6  # MACs fractions are exact; this only absorbs float rounding


def evaluate_gate(
    kind: str, budget: float, achieved: float, drop_points: float | None, max_drop_points: float | None
) -> GateResult:
    reasons = []
    budget_met = achieved <= budget + _BUDGET_SLACK
    if not budget_met:
        what = "MACs" if kind == "flops" else "median latency"
        reasons.append(f"budget not met: {what} kept {achieved:.1%} > {budget:.1%}")
    accuracy_ok = max_drop_points is None or (drop_points is not None and drop_points <= max_drop_points)
    if not accuracy_ok:
        reasons.append(f"accuracy dropped {drop_points:.2f} points > allowed {max_drop_points:.2f}")
    return GateResult(budget_met and accuracy_ok, budget_met, accuracy_ok, tuple(reasons))


def group_channels(analysis: ModelAnalysis, plan: PruningPlan) -> list[dict]:
    selection = select_channels(plan, analysis.groups, channel_scores(analysis, plan.importance), analysis.depth)
    rows = []
    for group in analysis.prunable_groups:
        kept_units = len(selection.keep_units.get(group.id, range(group.n_units)))
        rows.append(
            {
                "id": group.id,
                "name": group.name,
                "keep_ratio": float(plan.keep_ratios.get(group.id, 1.0)),
                "channels_before": group.n_channels,
                "channels_after": kept_units * group.unit_width,
            }
        )
    return rows
