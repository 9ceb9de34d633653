"""A latency budget closed by measurement: the plan chosen on the predictor is built and timed once; if it
misses the budget by more than a tolerance, the predictor is fitted again with that measurement (which sits
where the budget is, unlike the calibration models) and the plan chosen again. What a deployer wants is the
measured latency of what ships, and one paired timing of the chosen model is cheap next to the search."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agmc_onnx.errors import PreconditionError
from agmc_onnx.layer_latency.build import refit
from agmc_onnx.layer_latency.predictor import LayerLatencyModel

__all__ = ["LatencyCheck", "checked_plan", "shipped"]

log = logging.getLogger(__name__)

# How strongly a measured plan pulls the refitted predictor, against the calibration models' weight 1:
# enough for the prediction to pass close to it, so that the next plan is chosen on the measured level.
_MEASURED_WEIGHT = 10.0


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
    choose: Callable[[LayerLatencyModel], Mapping[str, float]],
    latency_model: LayerLatencyModel,
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
        check = LatencyCheck(tuple(sorted(keep.items())), predictor.predict(keep), float(measure(keep)))
        checks.append(check)
        log.info("latency check %d: predicted %.3f ms, measured %.3f ms, budget %.3f ms (%+.1f %%)", len(checks),
                 check.predicted_ms, check.measured_ms, budget_ms, 100 * check.error(budget_ms))
        if abs(check.error(budget_ms)) <= tolerance or len(checks) >= max_checks:
            break
        predictor = refit(predictor, keep, check.measured_ms, weight=_MEASURED_WEIGHT)
    return checks


def shipped(checks: list[LatencyCheck], budget_ms: float, tolerance: float = 0.05) -> LatencyCheck:
    """The checked plan to ship: of those measured within the budget (plus ``tolerance``), the slowest (it
    keeps the most); if none is, the fastest measured."""
    within = [c for c in checks if c.error(budget_ms) <= tolerance]
    if within:
        return max(within, key=lambda c: c.measured_ms)
    return min(checks, key=lambda c: c.measured_ms)

