"""Latency budgets from measured per-layer tables: every episode meets the predicted latency and keeps
each group on one of its staircase's fast steps."""

from __future__ import annotations

from search_fixtures import SPEC, labelled_by_model, one_torch_thread, tiny_classifier  # noqa: F401

from agmc_onnx.analysis import analyze_model
from agmc_onnx.search import AccuracyReward, SearchConfig, run_search


def test_table_latency_search_keeps_counts_on_fast_steps_within_budget(tmp_path) -> None:
    model = tiny_classifier()
    analysis = analyze_model(model)
    config = SearchConfig(
        policy="random",
        n_episodes=3,
        flops_keep_ratio=None,
        latency_keep_ratio=0.95,
        lower_bound=0.5,
        table_cache_dir=str(tmp_path),
    )
    result = run_search(analysis, AccuracyReward(analysis, labelled_by_model(model, 16), SPEC), config)
    latency_model = result.latency_fit.cost_model
    budget_ms = 0.95 * result.latency_fit.original_ms
    fast = {s.group_id: set(s.fast_counts) | {s.counts[-1]} for s in latency_model.staircases}
    units = {g.id: g.n_units for g in analysis.prunable_groups}
    for record in result.records:
        assert record.predicted_latency_ms <= budget_ms + 1e-9
    for group_id, keep_ratio in result.plan.keep_ratios.items():
        assert round(keep_ratio * units[group_id]) in fast[group_id]
