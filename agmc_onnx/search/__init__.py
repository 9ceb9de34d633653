"""AGMC search: a GNN encoder-decoder and a DDPG agent choose per-group keep ratios under a budget.

Attributes load on first use (PEP 562), so ``POLICY_NAMES`` — which the CLI needs to build its help —
does not import torch-geometric.
"""

from importlib import import_module

POLICY_NAMES = ("agmc", "amc", "uniform", "random")

_EXPORTS = {
    "SearchConfig": "run",
    "SearchResult": "run",
    "run_search": "run",
    "search_model": "model_search",
    "scaled_warmup": "agent",
    "EpisodeProgress": "log",
    "DDPGConfig": "agent",
    "EncoderConfig": "encoder",
    "RewardConfig": "reward",
    "RewardFn": "reward",
    "RewardSample": "reward",
    "AccuracyReward": "reward",
    "FidelityReward": "reward",
    "ActionWall": "budget",
    "CostModel": "budget",
    "uniform_keep_ratio": "budget",
    "LatencyFit": "latency_model",
    "fit_latency_model": "latency_model",
    "EpisodeRecord": "log",
    "RunDirectory": "log",
    "make_policy": "policies",
    "build_graph_features": "features",
    "rule_features": "features",
    "search_order": "features",
    "calibration_batches": "recalibrate",
}

__all__ = ["POLICY_NAMES", *_EXPORTS]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agmc_onnx.search' has no attribute '{name}'")
    return getattr(import_module(f"agmc_onnx.search.{module}"), name)
