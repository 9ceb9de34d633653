"""A latency budget closed by measurement: the plan chosen on the predictor is built and timed once; if it
misses the budget by more than a tolerance, the predictor is corrected to pass through the measured plans nearest
the budget (a ratio through one, a line through two: a secant step) and the plan chosen again. Refitting the
predictor's coefficients with the measured plan as one more weighted point moved it only part of the way (the
full model and calibration models hold the line: ResNet-56 0.438 → 0.439 → 0.461 of the original over three
timings for a budget of 0.5); anchored on the measurement, the next plan is chosen on the measured level.
What a deployer wants is the measured latency of what ships, and one paired timing of the chosen model is
cheap next to the search."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from agmc_onnx.errors import PreconditionError
from agmc_onnx.layer_latency.predictor import LayerLatencyModel
from agmc_onnx.search.budget import CostModel

__all__ = ["LatencyCheck", "anchored", "checked_plan", "predicted_ms", "shipped"]

log = logging.getLogger(__name__)

# A line through two measured plans only when their predictions are this far apart (relative to the budget)
# and its slope is plausible; closer, timing noise (2-5 % per plan) would make the slope meaningless.
_MIN_SPREAD = 0.03
_SLOPES = (0.5, 2.0)


@dataclass(frozen=True)
class LatencyCheck:
    """One chosen plan: its kept fraction per group, what the predictor of the moment said, and what was
    measured."""

    keep: tuple[tuple[str, float], ...]
    predicted_ms: float
    measured_ms: float

    def error(self, budget_ms: float) -> float:
        """Measured latency relative to the budget, minus 1 (positive: slower than the budget)."""
        return self.measured_ms / budget_ms - 1.0


def checked_plan(
    choose: Callable[[LayerLatencyModel | CostModel], Mapping[str, float]],
    latency_model: LayerLatencyModel | CostModel,
    budget_ms: float,
    measure: Callable[[Mapping[str, float]], float],
    tolerance: float = 0.05,
    max_checks: int = 3,
) -> list[LatencyCheck]:
    """Every check made, in order; ``shipped(checks)`` is the plan to ship.

    ``choose(predictor)`` gives the kept fraction per group of a plan meeting ``budget_ms`` on that
    predictor; ``measure(keep)`` the plan's latency in the predictor's time base (timed paired against the full model
    and scaled by its measured latency, so that drift cancels). Stops at the first plan within ``tolerance``
    of the budget (either side: a plan much faster than asked for gives away accuracy) or after ``max_checks``."""
    if max_checks < 1 or tolerance <= 0:
        raise PreconditionError(f"need max_checks ≥ 1 and tolerance > 0, got {max_checks} and {tolerance}")
    checks: list[LatencyCheck] = []
    predictor = latency_model
    while True:
        keep = dict(choose(predictor))
        if checks and tuple(sorted(keep.items())) == checks[-1].keep:
            break  # the corrected predictor chooses the same plan: another timing would tell nothing new
        check = LatencyCheck(tuple(sorted(keep.items())), predicted_ms(predictor, keep), float(measure(keep)))
        checks.append(check)
        log.info("latency check %d: predicted %.3f ms, measured %.3f ms, budget %.3f ms (%+.1f %%)", len(checks),
                 check.predicted_ms, check.measured_ms, budget_ms, 100 * check.error(budget_ms))
        if abs(check.error(budget_ms)) <= tolerance or len(checks) >= max_checks:
            break
        predictor = anchored(latency_model, checks, budget_ms)
    return checks


def anchored(predictor: LayerLatencyModel | CostModel, checks: list[LatencyCheck], budget_ms: float):
    """``predictor`` corrected to pass through the measured plans nearest the budget: through the two nearest
    by a line (measured = a + b · predicted) when they are apart enough for a slope, else through the nearest
    by a ratio. Works on a ``LayerLatencyModel`` and on a ``CostModel`` (both affine in their coefficients)."""
    near = sorted(checks, key=lambda c: abs(c.error(budget_ms)))[:2]
    predicted = [predicted_ms(predictor, dict(c.keep)) for c in near]
    measured = [c.measured_ms for c in near]
    offset, slope = 0.0, measured[0] / predicted[0]
    if len(near) == 2 and abs(predicted[1] - predicted[0]) > _MIN_SPREAD * budget_ms:
        line = (measured[1] - measured[0]) / (predicted[1] - predicted[0])
        if _SLOPES[0] <= line <= _SLOPES[1]:
            offset, slope = measured[0] - line * predicted[0], line
    return _affine(predictor, offset, slope)


def _affine(predictor, offset: float, slope: float):
    """The cost model whose prediction is ``offset + slope ·`` ``predictor``'s."""
    if isinstance(predictor, LayerLatencyModel):
        return dataclasses.replace(predictor, overhead_ms=offset + slope * predictor.overhead_ms,
                                   scale=slope * predictor.scale, macs_ms=slope * predictor.macs_ms)
    if isinstance(predictor, CostModel):
        savings = None if predictor.removal_savings is None else slope * predictor.removal_savings
        return dataclasses.replace(predictor, constant=offset + slope * predictor.constant,
                                   layer_weights=slope * predictor.layer_weights, removal_savings=savings)
    raise PreconditionError(f"cannot correct a {type(predictor).__name__} by measurement")


def predicted_ms(predictor: LayerLatencyModel | CostModel, keep: Mapping[str, float]) -> float:
    """``predictor``'s latency of the plan keeping ``keep`` (fraction per group id; absent groups whole)."""
    return float(predictor.cost(np.array([keep.get(g, 1.0) for g in predictor.macs.group_ids])))


def shipped(checks: list[LatencyCheck], budget_ms: float, tolerance: float = 0.05) -> LatencyCheck:
    """The checked plan to ship: of those measured within the budget (plus ``tolerance``), the slowest (it
    keeps the most); if none is, the fastest measured."""
    within = [c for c in checks if c.error(budget_ms) <= tolerance]
    if within:
        return max(within, key=lambda c: c.measured_ms)
    return min(checks, key=lambda c: c.measured_ms)

