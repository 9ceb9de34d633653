"""The speed benchmark's budget plans (``benchmarks/speed.py``): a feasible plan per budget, and a latency
budget closed by measurement."""

from __future__ import annotations

import numpy as np

from agmc_onnx.cost import measure_paired
from agmc_onnx.errors import BudgetUnreachableError
from agmc_onnx.importance import channel_scores
from agmc_onnx.plan import PruningPlan, select_channels
from agmc_onnx.prune import apply_selection


def budget_plans(analysis, latency_fp32, latency_int8, int8_keeps: list[float], int8_speedup: float) -> dict:
    """Per budget: (keep fractions, predicted fraction of the MACs or of the fp32 original's latency, and
    for a latency budget the predictor, budget in ms and fp32 reference it was chosen with)."""
    from agmc_onnx.groups.macs_model import MacsModel
    from agmc_onnx.search.budget import CostModel

    macs = CostModel.of_macs(MacsModel.from_analysis(analysis))
    # The fp32 original in the INT8 tables' time base: INT8 at full width × the paired INT8 speed-up.
    int8_reference = latency_int8.measured_full_ms * int8_speedup
    budgets = [("--flops 0.5", macs, 0.5, macs.full_cost),
               ("--latency 0.5", latency_fp32, 0.5, latency_fp32.measured_full_ms),
               *((f"--latency {keep} + INT8", latency_int8, keep, int8_reference) for keep in int8_keeps)]
    plans = {}
    for label, cost, keep, reference in budgets:
        steps = None if cost is macs else _steps(cost)
        try:
            plan = filled_plan(analysis, cost, keep * reference, steps)
        except BudgetUnreachableError:  # an unreachable budget becomes its floor (every group at the bound)
            floor = filled_plan(analysis, cost, None, steps)
            label, plan = f"{label} (unreachable: floor {_predict(cost, floor) / reference:.2f})", floor
        predicted = _predict(cost, plan) / reference
        plans[label] = (plan, predicted, None if cost is macs else (cost, keep * reference, reference))
    return plans


def filled_plan(analysis, cost, target: float | None, steps=None) -> dict[str, float]:
    """The largest single keep ratio meeting ``target`` on ``cost`` (None: the floor, every group at the lower
    bound), then groups raised greedily while it holds (a feasible plan, not a searched policy)."""
    from agmc_onnx.search.budget import ActionWall, fill_greedily, uniform_keep_ratio
    from agmc_onnx.search.features import search_order

    groups = search_order(analysis)
    if target is None:
        target = ActionWall(groups, cost, float("inf"), 0.2, 8, step_counts=steps).min_cost
    action_wall = ActionWall(groups, cost, target, 0.2, 8, step_counts=steps)
    _, counts = uniform_keep_ratio(action_wall)
    counts = fill_greedily(counts, action_wall.choices, action_wall.n_units, action_wall.meets)
    return {g.id: int(c) / g.n_units for g, c in zip(groups, counts)}


def checked(analysis, label: str, chosen, shipped_full, ship, args) -> tuple[dict, float, list]:
    """The latency budget closed by measurement (``search.latency_check``): the plan timed paired against
    the full model of its precision; off by more than ``--check-tolerance``, the predictor is fitted again
    with that measurement and the plan chosen again."""
    from agmc_onnx.search.latency_check import checked_plan, shipped

    predictor, budget_ms, reference = chosen

    def measure(keep) -> float:
        selection = select_channels(PruningPlan(keep), analysis.groups, channel_scores(analysis))
        pruned = ship(apply_selection(analysis, selection)[0])
        paired = measure_paired(shipped_full, pruned, args.target, n_rounds=args.rounds,
                                runs_per_block=args.runs_per_block, sessions=args.sessions)
        return predictor.measured_full_ms / paired.speedup

    def choose(corrected) -> dict[str, float]:
        try:
            return filled_plan(analysis, corrected, budget_ms, _steps(corrected))
        except BudgetUnreachableError:  # the measurement says the budget is below the floor: ship the floor
            return filled_plan(analysis, corrected, None, _steps(corrected))

    checks = checked_plan(choose, predictor, budget_ms, measure, args.check_tolerance)
    final = shipped(checks, budget_ms, args.check_tolerance)
    history = [{"predicted_fraction": c.predicted_ms / reference, "measured_fraction": c.measured_ms / reference}
               for c in checks]
    return dict(final.keep), final.predicted_ms / reference, history


def _steps(latency_model) -> dict:
    return {s.group_id: s.fast_counts for s in latency_model.staircases}


def _predict(cost, plan: dict[str, float]) -> float:
    return float(cost.cost(np.array([plan.get(g, 1.0) for g in cost.macs.group_ids])))
