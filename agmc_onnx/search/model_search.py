"""The one entry to the search: a model and its data in, a ``SearchResult`` whose plan says how it was scored.

The CLI (``agmc-onnx search``), ``compress`` and the benchmarks all call ``search_model``; none of them
builds a reward, a search configuration or the best model itself.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx

from agmc_onnx.analysis import ModelAnalysis, analyze_model
from agmc_onnx.cost import measure_latency
from agmc_onnx.data import ImageDataset, PreprocessSpec, load_splits, spec_from_model
from agmc_onnx.data.feeds import Feeder
from agmc_onnx.errors import PreconditionError
from agmc_onnx.fidelity import run_outputs
from agmc_onnx.progress import ProgressFn
from agmc_onnx.search.reward import AccuracyReward, FidelityReward, RewardConfig
from agmc_onnx.search.run import SearchConfig, SearchResult, run_search

__all__ = ["search_model"]


def search_model(
    model: onnx.ModelProto | ModelAnalysis,
    data: ImageDataset | Feeder | str | Path,
    config: SearchConfig,
    *,
    spec: PreprocessSpec | None = None,
    task: str = "accuracy",
    reward: RewardConfig = RewardConfig(),
    reward_size: int = 1000,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: ProgressFn | None = None,
) -> SearchResult:
    """Search keep ratios of ``model`` under ``config``'s budget, scored on ``data``.

    ``data`` is the reward set itself, or a dataset path whose held-out TRAIN images (``reward_size`` of
    them, seeded by ``config.seed``) become the reward set. ``spec`` defaults to the model's own
    preprocessing metadata. With ``task="fidelity"`` the reward is the pruned model's agreement with the
    original's outputs and ``data`` is a ``Feeder`` (any dataset bound to the model's inputs; no labels).
    The result carries its reward function, so ``result.best_model()`` is the
    pruned model the best reward was measured on; under a latency budget the plan's metadata also holds
    that model's measured latency beside the fitted model's prediction.
    """
    analysis = model if isinstance(model, ModelAnalysis) else analyze_model(model)
    if task == "fidelity":
        if not isinstance(data, Feeder):
            raise PreconditionError("a fidelity search needs its data bound to the model's inputs (a Feeder)")
        reward_fn = FidelityReward(analysis, data, run_outputs(analysis.model, data), reward)
    else:
        spec = spec or spec_from_model(model if isinstance(model, onnx.ModelProto) else analysis.model)
        if not isinstance(data, ImageDataset):
            data = load_splits(data, spec, reward_size=reward_size, seed=config.seed).reward
        reward_fn = AccuracyReward(analysis, data, spec, reward)
    result = run_search(analysis, reward_fn, config, run_dir=run_dir, resume=resume, progress=progress)
    result = dataclasses.replace(result, reward=reward_fn)
    # The plan holds keep ratios only: say how its reward was scored, so whoever applies it knows the
    # accuracy assumed re-estimated BatchNormalization statistics (``best_model()`` has them).
    scored = {"reward_images": len(data.dataset) if isinstance(data, Feeder) else data.n_images}
    scored |= {"reward": task, "reward_bn_recalibrated": reward.recalibrate_bn}
    if result.latency_fit is not None:
        scored["measured_latency_ms"] = measure_latency(result.best_model(), config.target).median_ms
    search_meta = {**result.plan.metadata["search"], **scored}
    plan = dataclasses.replace(result.plan, metadata={**result.plan.metadata, "search": search_meta})
    return dataclasses.replace(result, plan=plan)
