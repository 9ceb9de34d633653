"""Public pruning API: plan or selection in, physically smaller and validated model out."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import onnx

from agmc_onnx.analysis import ModelAnalysis, analyze_model
from agmc_onnx.graph.counting import ModelCost, count_cost
from agmc_onnx.importance import Importance, channel_scores
from agmc_onnx.io import model_file_size
from agmc_onnx.passes.base import PassManager
from agmc_onnx.passes.cleanup import CleanupPass
from agmc_onnx.passes.infer_shapes import InferShapesPass
from agmc_onnx.passes.prune_channels import PruneChannelsPass
from agmc_onnx.passes.remove_branches import RemoveBranchesPass
from agmc_onnx.plan import ChannelSelection, PruningPlan, select_channels

__all__ = ["PruneResult", "prune_model", "apply_selection", "kept_channels"]


@dataclass(frozen=True)
class PruneResult:
    model: onnx.ModelProto
    selection: ChannelSelection
    before: ModelCost
    after: ModelCost
    seconds: float
    pass_stats: dict


def apply_selection(analysis: ModelAnalysis, selection: ChannelSelection) -> tuple[onnx.ModelProto, dict]:
    """Rewrite the analysed model so that only the selected units remain."""
    kept = analysis.kept_positions(selection.dropped_roots(analysis.groups))
    lengths = {name: len(info) for name, info in analysis.flow.tensors.items()}  # a Split part may keep all
    removed = [analysis.depth.branch(b) for b in selection.removed_branches]
    depth_passes = [RemoveBranchesPass(removed)] if removed else []
    passes = [PruneChannelsPass(analysis.flow.edits, kept, lengths), *depth_passes, CleanupPass(), InferShapesPass()]
    return PassManager(passes).run(analysis.model)


def kept_channels(
    analysis: ModelAnalysis, plan: PruningPlan | ChannelSelection, importance: Importance | None = None
) -> dict[str, np.ndarray]:
    """For every tensor that loses channels under ``plan`` (ranked as ``prune_model`` ranks them), the
    original channel positions that stay, in order: the pruned tensor's channel i is the original's
    ``kept[name][i]``. Nothing is rewritten."""
    if isinstance(plan, ChannelSelection):
        selection = plan
    else:
        selection = select_channels(
            plan, analysis.groups, channel_scores(analysis, importance or plan.importance), analysis.depth
        )
    return analysis.kept_positions(selection.dropped_roots(analysis.groups))


def prune_model(
    model: onnx.ModelProto,
    plan: PruningPlan | ChannelSelection,
    analysis: ModelAnalysis | None = None,
    importance: Importance | None = None,
) -> PruneResult:
    """Prune ``model`` (never modified) by a plan of keep ratios or by explicit kept units.

    A plan's units are ranked by ``importance`` (default: the criterion the plan names)."""
    start = time.perf_counter()
    analysis = analysis or analyze_model(model)
    if isinstance(plan, ChannelSelection):
        selection = plan
    else:
        scores = channel_scores(analysis, importance or plan.importance)
        selection = select_channels(plan, analysis.groups, scores, analysis.depth)
    pruned, stats = apply_selection(analysis, selection)
    return PruneResult(
        model=pruned,
        selection=selection,
        before=ModelCost(analysis.total_macs, analysis.total_params, model_file_size(analysis.model)),
        after=count_cost(pruned),
        seconds=time.perf_counter() - start,
        pass_stats=stats,
    )
