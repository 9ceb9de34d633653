"""agmc-onnx: channel pruning of ONNX models, searched by a GNN + DDPG agent, fine-tuned and measured.

The small public API; everything else lives in the submodules named in docs/architecture.md.
"""

from agmc_onnx.analysis import ModelAnalysis, analyze_model
from agmc_onnx.errors import AgmcError
from agmc_onnx.io import load_model, save_model
from agmc_onnx.plan import ChannelSelection, PruningPlan, select_channels, uniform_plan
from agmc_onnx.prune import PruneResult, prune_model
from agmc_onnx.validate import validate_pruned

__all__ = [
    "AgmcError",
    "ChannelSelection",
    "ModelAnalysis",
    "PruneResult",
    "PruningPlan",
    "analyze_model",
    "load_model",
    "prune_model",
    "save_model",
    "select_channels",
    "uniform_plan",
    "validate_pruned",
]
