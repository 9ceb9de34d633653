"""agmc-onnx: channel pruning of ONNX models, searched by a GNN + DDPG agent, fine-tuned and measured.

The small public API; everything else lives in the submodules named in docs/architecture.md.
Attributes load on first use (PEP 562), so importing a light submodule (``agmc_onnx.errors``, the CLI)
does not pull in onnx, onnxruntime or networkx.
"""

from importlib import import_module

_EXPORTS = {
    "AgmcError": "errors",
    "ChannelSelection": "plan",
    "ModelAnalysis": "analysis",
    "PruneResult": "prune",
    "PruningPlan": "plan",
    "analyze_model": "analysis",
    "load_model": "io",
    "prune_model": "prune",
    "save_model": "io",
    "select_channels": "plan",
    "uniform_plan": "plan",
    "validate_pruned": "validate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agmc_onnx' has no attribute '{name}'")
    return getattr(import_module(f"agmc_onnx.{module}"), name)
