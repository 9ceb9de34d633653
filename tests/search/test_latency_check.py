"""A latency budget closed by measurement: refitting the predictor on a measured plan, and re-targeting."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import pytest
import tiny_models

from agmc_onnx.analysis import analyze_model
from agmc_onnx.layer_latency import TableConfig, build_latency_model
from agmc_onnx.layer_latency.build import refit
from agmc_onnx.layer_latency.predictor import LayerLatencyModel
from agmc_onnx.search.latency_check import LatencyCheck, anchored, checked_plan, shipped

_QUICK = {"runs": 3, "max_sweep": 6, "max_fast_steps": 3, "calibration_rounds": 2, "calibration_plans": 3}


@pytest.fixture(scope="module")
def latency_model(tmp_path_factory):
    config = TableConfig(cache_dir=tmp_path_factory.mktemp("tables"), **_QUICK)
    return build_latency_model(analyze_model(tiny_models.residual_chain()), config)


def _uniform(model, keep: float) -> dict[str, float]:
    return {s.group_id: round(keep * s.counts[-1]) / s.counts[-1] for s in model.staircases}


@dataclass(frozen=True)
class _LinearTables(LayerLatencyModel):
    """Tables in which each group costs 0.2 ms per kept fraction (the tiny model's measured tables are
    flat: none of its smaller widths is a fast step)."""

    def layer_ms(self, keep_fractions: np.ndarray) -> np.ndarray:
        return 0.2 * np.asarray(keep_fractions, dtype=np.float64)


def _lawful(model):
    """``model`` on linear tables, calibrated on models that follow the plain law (full latency minus the
    tables' savings) exactly, so that the test does not depend on the tiny model's timing noise."""
    model = _LinearTables(**{f.name: getattr(model, f.name) for f in fields(model)} | {"measured_full_ms": 2.0})
    full = model.measured_full_ms
    table_full = model.features(np.ones(len(model.macs.group_ids)))[0]
    points = []
    for level in (1.0, 0.8, 0.6, 0.4):
        features = model.features(model.keep_array(_uniform(model, level)))
        points.append((features, (full - table_full + features[0]) / full, 3.0 if level == 1.0 else 1.0))
    return refit(replace(model, calibration_points=tuple(points[:-1])), _uniform(model, 0.4),
                 full * points[-1][1], weight=1.0)


def test_refit_passes_near_the_measured_plan_and_keeps_the_full_model(latency_model) -> None:
    latency_model = _lawful(latency_model)
    keep = _uniform(latency_model, 0.5)
    before = latency_model.predict(keep)
    measured = 0.8 * before  # the device is faster than predicted for this plan
    corrected = refit(latency_model, keep, measured, weight=10.0)
    assert abs(corrected.predict(keep) - measured) < 0.5 * abs(before - measured)
    assert corrected.measured_full_ms == latency_model.measured_full_ms  # the budget's reference stays
    assert len(corrected.calibration_points) == len(latency_model.calibration_points) + 1


def _choose_at(budget_ms: float):
    def choose(predictor) -> dict[str, float]:  # the largest uniform plan meeting the budget on predictor
        for level in np.linspace(1.0, 0.2, 33):
            plan = _uniform(predictor, level)
            if predictor.predict(plan) <= budget_ms:
                return plan
        return _uniform(predictor, 0.2)
    return choose


def test_a_plan_off_the_budget_is_measured_and_chosen_again(latency_model) -> None:
    latency_model = _lawful(latency_model)
    truth = lambda keep: 0.8 * latency_model.predict(keep)  # noqa: E731  the device, unknown to the predictor
    budget = 0.7 * latency_model.measured_full_ms
    checks = checked_plan(_choose_at(budget), latency_model, budget, truth, tolerance=0.05, max_checks=3)
    assert len(checks) >= 2 and checks[0].error(budget) < -0.05  # the first plan was too fast
    final = shipped(checks, budget, 0.05)
    assert abs(final.error(budget)) < abs(checks[0].error(budget))
    exact = checked_plan(_choose_at(budget), latency_model, budget, latency_model.predict, tolerance=0.5)
    assert len(exact) == 1  # within tolerance at once: one timing


def test_shipped_takes_the_slowest_plan_within_the_budget_else_the_fastest() -> None:
    checks = [LatencyCheck((), 1.0, 1.2), LatencyCheck((), 1.0, 0.9), LatencyCheck((), 1.0, 0.95)]
    assert shipped(checks, 1.0, 0.02).measured_ms == 0.95
    assert shipped(checks[:1] + [LatencyCheck((), 1.0, 1.1)], 1.0, 0.02).measured_ms == 1.1


def _choose_continuous(budget_ms: float):
    def choose(predictor) -> dict[str, float]:  # the uniform keep fraction meeting the budget (bisection)
        groups = [s.group_id for s in predictor.staircases]
        low, high = 0.05, 1.0
        for _ in range(40):
            middle = (low + high) / 2
            meets = predictor.predict(dict.fromkeys(groups, middle)) <= budget_ms
            low, high = (middle, high) if meets else (low, middle)
        return dict.fromkeys(groups, low)
    return choose


@pytest.mark.parametrize("device", ["faster", "slower", "curved"])
def test_the_second_timing_lands_within_tolerance(latency_model, device) -> None:
    latency_model = _lawful(latency_model)
    law = {"faster": lambda ms: 0.85 * ms, "slower": lambda ms: 1.15 * ms,  # the device, unknown to the predictor
           "curved": lambda ms: 0.3 + 0.5 * ms + 0.08 * ms**2}[device]
    budget = 0.7 * latency_model.measured_full_ms
    checks = checked_plan(_choose_continuous(budget), latency_model, budget,
                          lambda keep: law(latency_model.predict(keep)), tolerance=0.05, max_checks=3)
    assert abs(checks[0].error(budget)) > 0.05  # the predictor alone misses
    assert len(checks) == 2 and abs(checks[1].error(budget)) <= 0.05
    again = checked_plan(_choose_continuous(budget), latency_model, budget,
                         lambda keep: law(latency_model.predict(keep)), tolerance=0.05, max_checks=3)
    assert again == checks  # deterministic


def test_anchored_passes_through_the_measured_plans(latency_model) -> None:
    latency_model = _lawful(latency_model)
    plans = [_uniform(latency_model, 0.5), _uniform(latency_model, 0.8)]
    checks = [LatencyCheck(tuple(sorted(p.items())), 0.0, 0.9 * latency_model.predict(p) + 0.05) for p in plans]
    budget = checks[0].measured_ms
    ratio = anchored(latency_model, checks[:1], budget)
    assert ratio.predict(plans[0]) == pytest.approx(checks[0].measured_ms)
    line = anchored(latency_model, checks, budget)
    for plan, check in zip(plans, checks):
        assert line.predict(plan) == pytest.approx(check.measured_ms)
