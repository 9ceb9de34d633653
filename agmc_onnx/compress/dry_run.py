"""``compress --dry-run``: what the run would work on, and whether the budget is reachable, without searching."""

from __future__ import annotations

from pathlib import Path

from agmc_onnx.analysis import analyze_model
from agmc_onnx.compress.config import CompressConfig
from agmc_onnx.cost import measure_latency
from agmc_onnx.importance import DATA_IMPORTANCE, channel_scores
from agmc_onnx.io import load_model
from agmc_onnx.search.budget import macs_wall, uniform_keep_ratio
from agmc_onnx.search.depth_budget import searchable_removals
from agmc_onnx.search.features import search_order
from agmc_onnx.search.table_budget import table_budget

__all__ = ["estimate"]


def estimate(model_path: Path, config: CompressConfig) -> dict:
    """Analysis totals, the uniform keep ratio that meets a MACs budget, and the latency target in ms.

    Raises ``BudgetUnreachableError`` when even every group at the lower bound exceeds the budget.
    """
    model = load_model(model_path)
    analysis = analyze_model(model)
    kind, keep = config.budget
    summary = {
        "model": str(model_path),
        "groups": len(analysis.groups),
        "prunable_groups": len(analysis.prunable_groups),
        "macs": analysis.total_macs,
        "params": analysis.total_params,
        "prunable_macs_share": analysis.prunable_macs / max(analysis.total_macs, 1),
        "budget_kind": kind,
        "budget_keep_fraction": keep,
        "target": config.target,
        "episodes": config.episodes,
        "policy": config.policy,
    }
    if kind == "flops":
        search = config.search_config()
        wall = macs_wall(analysis, search_order(analysis), keep, search.lower_bound, search.round_to,
                         scores=_data_free_scores(analysis, search.importance))
        uniform, counts = uniform_keep_ratio(wall)
        summary["uniform_keep_ratio"] = uniform
        summary["uniform_macs_kept_fraction"] = wall.cost(counts) / wall.full_cost
    elif config.search_config().latency_model == "table":
        summary.update(_table_estimate(analysis, config, keep))
    else:
        latency = measure_latency(model, config.target)
        summary["original_latency_ms"] = latency.median_ms
        summary["target_latency_ms"] = keep * latency.median_ms
    return summary


def _data_free_scores(analysis, importance: str):
    """The unit scores of the search's importance; a data criterion (not computed in a dry run) ranks by L1.

    Only groups whose units differ in cost read them (``MacsModel``)."""
    return None if importance in DATA_IMPORTANCE else channel_scores(analysis, importance)


def _table_estimate(analysis, config: CompressConfig, keep: float) -> dict:
    """The latency budget as the search will see it: per-layer tables built (or read from the cache), the
    uniform keep ratio on the staircases' fast steps that meets it, and the fastest the model can get."""
    search = config.search_config()
    removable = searchable_removals(analysis, search_order(analysis)) if search.depth_threshold is not None \
        else frozenset()
    wall, fit = table_budget(analysis, search_order(analysis), keep, config.target, search.latency_precision,
                             search.lower_bound, search.round_to, search.table_cache_dir, removable,
                             _data_free_scores(analysis, search.importance))
    uniform, counts = uniform_keep_ratio(wall)
    return {
        "latency_precision": search.latency_precision,
        "original_latency_ms": fit.original_ms,
        "target_latency_ms": keep * fit.original_ms,
        "uniform_keep_ratio": uniform,
        "uniform_predicted_latency_ms": wall.cost(counts),
        "latency_floor_ms": wall.min_cost,
    }
