"""The CI gate (budget met, accuracy drop within bounds) and the per-group channel table of a report."""

from __future__ import annotations

from agmc_onnx.analysis import ModelAnalysis
from agmc_onnx.compress.report import GateResult
from agmc_onnx.cost import TIMING_TOLERANCE
from agmc_onnx.importance import channel_scores
from agmc_onnx.plan import PruningPlan, select_channels

__all__ = ["evaluate_gate", "group_channels"]

_BUDGET_SLACK = 1e-6  # MACs fractions are exact; this only absorbs float rounding


def evaluate_gate(
    kind: str,
    budget: float,
    achieved: float,
    drop_points: float | None,
    max_drop_points: float | None,
    fidelity_loss_points: float | None = None,
    max_fidelity_loss_points: float | None = None,
) -> GateResult:
    reasons = []
    limit = budget + _BUDGET_SLACK if kind == "flops" else budget * (1.0 + TIMING_TOLERANCE)
    budget_met = achieved <= limit
    if not budget_met:
        what = "MACs" if kind == "flops" else "median latency"
        within = "" if kind == "flops" else f" (+{TIMING_TOLERANCE:.0%} measurement tolerance: {limit:.1%})"
        reasons.append(f"budget not met: {what} kept {achieved:.1%} > {budget:.1%}{within}")
    accuracy_ok = max_drop_points is None or (drop_points is not None and drop_points <= max_drop_points)
    if not accuracy_ok:
        if drop_points is None:
            reasons.append("accuracy gate set but accuracy not measured (no labels); use max_fidelity_loss")
        else:
            reasons.append(f"accuracy dropped {drop_points:.2f} points > allowed {max_drop_points:.2f}")
    fidelity_ok = max_fidelity_loss_points is None or (
        fidelity_loss_points is not None and fidelity_loss_points <= max_fidelity_loss_points
    )
    if not fidelity_ok:
        reasons.append(f"fidelity fell {fidelity_loss_points:.2f} points > allowed {max_fidelity_loss_points:.2f}")
    passed = budget_met and accuracy_ok and fidelity_ok
    return GateResult(passed, budget_met, accuracy_ok and fidelity_ok, tuple(reasons), fidelity_ok)


def group_channels(analysis: ModelAnalysis, plan: PruningPlan) -> list[dict]:
    selection = select_channels(plan, analysis.groups, channel_scores(analysis, plan.importance), analysis.depth)
    kept = analysis.kept_positions(selection.dropped_roots(analysis.groups))
    rows = []
    for group in analysis.prunable_groups:
        output = analysis.flow.producers[group.name]  # the first producer's output: units may differ in width
        rows.append(
            {
                "id": group.id,
                "name": group.name,
                "keep_ratio": float(plan.keep_ratios.get(group.id, 1.0)),
                "channels_before": group.n_channels,
                "channels_after": len(kept[output]) if output in kept else group.n_channels,
            }
        )
    return rows
