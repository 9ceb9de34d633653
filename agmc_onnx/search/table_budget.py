"""The latency budget from measured per-layer tables: the action wall enforces the predicted latency of
the model as it ships (fp32 or INT8), and each group's kept counts are its staircase's fast steps."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from agmc_onnx.analysis import ModelAnalysis
from agmc_onnx.groups.find import ChannelGroup
from agmc_onnx.importance import ChannelScores
from agmc_onnx.layer_latency import TableConfig, build_latency_model, shipping_form
from agmc_onnx.search.budget import ActionWall
from agmc_onnx.search.latency_model import LatencyFit

__all__ = ["latency_wall", "table_budget"]

log = logging.getLogger(__name__)


def latency_wall(groups: Sequence[ChannelGroup], latency_model, target_ms: float, lower_bound: float,
                 round_to: int, removable: frozenset[str] = frozenset()) -> ActionWall:
    """The action wall of ``target_ms`` on ``latency_model``; a table model's groups keep their staircases'
    fast steps only."""
    staircases = getattr(latency_model, "staircases", None)
    steps = None if staircases is None else {s.group_id: s.fast_counts for s in staircases}
    return ActionWall(groups, latency_model, target_ms, lower_bound, round_to, removable, step_counts=steps)


def table_budget(
    analysis: ModelAnalysis,
    groups: Sequence[ChannelGroup],
    latency_keep_ratio: float,
    target: str,
    precision: str = "fp32",
    lower_bound: float = 0.2,
    round_to: int = 8,
    cache_dir=None,
    removable: frozenset[str] = frozenset(),
    scores: ChannelScores | None = None,
) -> tuple[ActionWall, LatencyFit]:
    """Wall at ``latency_keep_ratio`` × the original fp32 model's median latency on ``target``.

    With an INT8 precision the predicted latency is the quantized candidate's, so the budget counts what
    quantization gives as well as what pruning gives. ``scores``: the unit scores the search selects by."""
    config = TableConfig(target=target, precision=precision, lower_bound=lower_bound, cache_dir=cache_dir,
                         round_to=round_to)
    ship = shipping_form(analysis, precision)
    # With INT8, the fp32 original in the tables' time base: its latency relative to the shipped form at
    # full width, timed paired during calibration (separate timings drift apart on a shared machine).
    latency_model = build_latency_model(analysis, config, ship=ship,
                                        reference=None if ship is None else analysis.model, scores=scores)
    original_ms = latency_model.measured_full_ms if ship is None else latency_model.reference_ms
    target_ms = latency_keep_ratio * original_ms
    log.info("latency budget %.3f ms (%.0f %% of %.3f ms fp32); %s model at full width predicts %.3f ms",
             target_ms, 100 * latency_keep_ratio, original_ms, precision, latency_model.full_cost)
    wall = latency_wall(groups, latency_model, target_ms, lower_bound, round_to, removable)
    fit = LatencyFit(latency_model, original_ms, (1.0,), (latency_model.measured_full_ms,),
                     (latency_model.full_cost,), target)
    return wall, fit
