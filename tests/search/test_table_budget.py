"""Latency budgets from measured per-layer tables: every episode meets the predicted latency and keeps
each group on one of its staircase's fast steps."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from search_fixtures import SPEC, labelled_by_model, one_torch_thread, tiny_classifier  # noqa: F401

from agmc_onnx.analysis import analyze_model
from agmc_onnx.graph.counting import count_cost
from agmc_onnx.search import AccuracyReward, SearchConfig, run_search
from agmc_onnx.search.features import search_order
from agmc_onnx.search.table_budget import table_budget

STEP = 4


def _ceil_to_step(count: int) -> int:
    return -(-count // STEP) * STEP


def _idealised_device(monkeypatch) -> None:
    """Latency proportional to MACs at channel counts rounded up to a multiple of ``STEP`` (the staircase
    a vectorised kernel gives), so the test checks the search's logic, not this machine's load: only
    multiples of ``STEP`` (and the full count) are fast steps."""

    def layer_ms(signature, c_in, c_out, profile, precision, **kwargs):
        return 1e-4 * _ceil_to_step(c_in) * _ceil_to_step(c_out) + 1e-3

    def paired(model_a, model_b, profile, **kwargs):
        a_ms, b_ms = (count_cost(m).macs * 1e-6 + 0.01 for m in (model_a, model_b))
        return SimpleNamespace(a=SimpleNamespace(median_ms=a_ms), speedup=a_ms / b_ms)

    monkeypatch.setattr("agmc_onnx.layer_latency.build.measure_point", layer_ms)
    monkeypatch.setattr("agmc_onnx.layer_latency.build.measure_paired", paired)


def test_table_latency_search_keeps_counts_on_fast_steps_within_budget(tmp_path, monkeypatch) -> None:
    _idealised_device(monkeypatch)
    model = tiny_classifier()
    analysis = analyze_model(model)
    config = SearchConfig(
        policy="random",
        n_episodes=3,
        flops_keep_ratio=None,
        latency_keep_ratio=0.95,
        lower_bound=0.5,
        round_to=1,  # without the staircase every count from half the width up would be allowed
        table_cache_dir=str(tmp_path),
    )
    result = run_search(analysis, AccuracyReward(analysis, labelled_by_model(model, 16), SPEC), config)
    latency_model = result.latency_fit.cost_model
    budget_ms = 0.95 * result.latency_fit.original_ms
    fast = {s.group_id: set(s.fast_counts) | {s.counts[-1]} for s in latency_model.staircases}
    units = {g.id: g.n_units for g in analysis.prunable_groups}
    for staircase in latency_model.staircases:  # the steps were read from the device, not assumed
        swept = set(staircase.counts)
        assert len(swept) > len(fast[staircase.group_id])
        assert fast[staircase.group_id] == {c for c in swept if c % STEP == 0 or c == staircase.counts[-1]}
    order = [g.id for g in search_order(analysis)]
    for record in result.records:
        assert record.predicted_latency_ms <= budget_ms + 1e-9
        for group_id, keep_ratio in zip(order, record.keep_ratios):
            assert round(keep_ratio * units[group_id]) in fast[group_id], (group_id, keep_ratio)
    for group_id, keep_ratio in result.plan.keep_ratios.items():
        assert round(keep_ratio * units[group_id]) in fast[group_id]


def test_int8_budget_places_the_fp32_original_in_the_tables_time_base(tmp_path, monkeypatch) -> None:
    """The INT8 budget's reference is the INT8 model's predicted latency times the paired fp32/INT8 ratio,
    not a separately timed fp32 run (separate timings drift apart on a shared machine)."""
    _idealised_device(monkeypatch)
    analysis = analyze_model(tiny_classifier())
    idealised = __import__("agmc_onnx.layer_latency.build", fromlist=["x"]).measure_paired

    def paired(model_a, model_b, profile, **kwargs):  # the fp32 original 1.5x slower than the INT8 model
        if model_a is analysis.model:
            return SimpleNamespace(a=SimpleNamespace(median_ms=3.0), speedup=1.5)
        return idealised(model_a, model_b, profile, **kwargs)

    monkeypatch.setattr("agmc_onnx.layer_latency.build.measure_paired", paired)
    wall, fit = table_budget(analysis, search_order(analysis), 0.9, "mobile-cpu", "int8-qoperator",
                             lower_bound=0.5, round_to=1, cache_dir=tmp_path)
    assert fit.original_ms == pytest.approx(fit.cost_model.measured_full_ms * 1.5)
    assert wall.target_cost == pytest.approx(0.9 * fit.original_ms)


def test_a_table_search_keeps_fast_steps_on_the_round_to_grid_and_its_plan_keeps_them(tmp_path, monkeypatch) -> None:
    """Fast steps here are multiples of 4; with round_to 8 only those on its grid may be chosen (a count fast
    for one layer alone can make its neighbours re-lay out their data), and the plan returned keeps exactly
    the counts the search costed."""
    from agmc_onnx.plan import kept_unit_count

    _idealised_device(monkeypatch)
    model = tiny_classifier()
    analysis = analyze_model(model)
    config = SearchConfig(policy="random", n_episodes=8, flops_keep_ratio=None, latency_keep_ratio=0.9,
                          lower_bound=0.25, round_to=8, table_cache_dir=str(tmp_path))
    result = run_search(analysis, AccuracyReward(analysis, labelled_by_model(model, 16), SPEC), config)
    groups = {g.id: g for g in analysis.prunable_groups}
    order = search_order(analysis)
    costed = [(round(k * g.n_units), g.n_units) for r in result.records for k, g in zip(r.keep_ratios, order)]
    assert all(count % 8 == 0 for count, _ in costed)  # 4, 12, 20 are fast steps too, but off the grid
    assert any(count < units for count, units in costed)
    for group_id, keep_ratio in result.plan.keep_ratios.items():
        group = groups[group_id]
        assert kept_unit_count(group, keep_ratio, result.plan.round_to) == round(keep_ratio * group.n_units)
