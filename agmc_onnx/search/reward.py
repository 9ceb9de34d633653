"""The search reward: top-1 accuracy of the pruned model, without fine-tuning, on held-out TRAIN images;
or, without labels, its fidelity to the original's outputs on held-out inputs.

Evaluations of identical kept-channel sets are cached (a converged agent proposes the same policy
again and again; ``round_to`` makes repeats frequent).
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import onnx

from agmc_onnx.analysis import ModelAnalysis
from agmc_onnx.cost.profiles import TargetProfile, get_profile
from agmc_onnx.cost.session import create_session
from agmc_onnx.data.dataset import ImageDataset
from agmc_onnx.data.feeds import Feeder
from agmc_onnx.data.preprocessing import PreprocessSpec
from agmc_onnx.evaluate import evaluate_accuracy
from agmc_onnx.fidelity import ReferenceOutputs, evaluate_fidelity
from agmc_onnx.importance import channel_scores
from agmc_onnx.passes.base import run_passes
from agmc_onnx.passes.reestimate_batchnorm import ReestimateBatchNormPass
from agmc_onnx.plan import ChannelSelection, PruningPlan, select_channels
from agmc_onnx.prune import apply_selection
from agmc_onnx.search.recalibrate import calibration_batches, calibration_feeds

__all__ = ["RewardConfig", "RewardSample", "AccuracyReward", "FidelityReward", "RewardFn", "selection_key"]

# Per episode, the cheaper re-fit whose cost the reconstruction reward was measured with (pruned layers only,
# 256 images), not reconstruct_pruned's heavier default (benchmarks/results/accuracy.md, search reward).
REWARD_RECONSTRUCTION_IMAGES = 256


@dataclass(frozen=True)
class RewardConfig:
    recalibrate_bn: bool = True
    # Re-fit the layers that lost input channels by least squares before scoring (BN statistics stay the
    # original's, as in ``reconstruct_pruned``): a reward closer to the accuracy after fine-tuning, at the
    # price of a re-fit per new policy (benchmarks/results/accuracy.md, reward section, measures both).
    reconstruct: bool = False
    calibration_images: int = 256  # the first images of the reward set
    calibration_batch_size: int = 128
    batch_size: int = 64
    threads: int = 2  # onnxruntime threads for scoring; no spinning, so the agent's updates are not starved

    def profile(self) -> TargetProfile:
        return dataclasses.replace(
            get_profile("server-cpu"), intra_op_threads=self.threads, allow_spinning=False
        )


@dataclass(frozen=True)
class RewardSample:
    accuracy: float  # top-1 fraction on the reward set
    cached: bool
    seconds: float


RewardFn = Callable[[ChannelSelection], RewardSample]


def selection_key(selection: ChannelSelection) -> str:
    """A short digest of the kept units of every group (the cache key)."""
    payload = json.dumps(sorted((k, list(v)) for k, v in selection.keep_units.items()))
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


class _PrunedModelReward(abc.ABC):
    """Callable ``selection -> RewardSample``: prune, re-estimate BN statistics, score; past scores cached."""

    def __init__(self, analysis: ModelAnalysis, config: RewardConfig, calibration: list) -> None:
        self.analysis = analysis
        self.config = config
        self.cache: dict[str, float] = {}
        self._calibration = calibration

    def selection_of(self, plan: PruningPlan) -> ChannelSelection:
        scores = channel_scores(self.analysis, plan.importance)
        return select_channels(plan, self.analysis.groups, scores, self.analysis.depth)

    def pruned_model(self, selection: ChannelSelection) -> onnx.ModelProto:
        """The physically pruned model the reward scores (with re-estimated BN statistics when enabled)."""
        pruned, _ = apply_selection(self.analysis, selection)
        if self.config.reconstruct:
            from agmc_onnx.reconstruct.run import ReconstructConfig, reconstruct_pruned

            config = ReconstructConfig(
                base_images=REWARD_RECONSTRUCTION_IMAGES, batch_size=self.config.calibration_batch_size,
                downstream=False,
            )
            return reconstruct_pruned(self.analysis, selection, pruned, self.dataset, self.spec, config).model
        return self.recalibrated(pruned)

    def recalibrated(self, pruned: onnx.ModelProto) -> onnx.ModelProto:
        """``pruned`` with BatchNormalization statistics re-estimated on the reward set (when enabled)."""
        if self.config.recalibrate_bn:
            pruned = run_passes(pruned, [ReestimateBatchNormPass(self._calibration, self.config.profile())])
        return pruned

    @abc.abstractmethod
    def score(self, session) -> float:
        """The reward of the pruned model behind ``session``."""

    def __call__(self, selection: ChannelSelection) -> RewardSample:
        started = time.perf_counter()
        key = selection_key(selection)
        if key in self.cache:
            return RewardSample(self.cache[key], True, time.perf_counter() - started)
        session = create_session(self.pruned_model(selection), self.config.profile())
        value = self.score(session)
        self.cache[key] = value
        return RewardSample(value, False, time.perf_counter() - started)


class AccuracyReward(_PrunedModelReward):
    """Top-1 accuracy on a fixed, labelled reward set."""

    def __init__(
        self,
        analysis: ModelAnalysis,
        dataset: ImageDataset,
        spec: PreprocessSpec,
        config: RewardConfig = RewardConfig(),
    ) -> None:
        self.dataset = dataset
        self.spec = spec
        self.calibration_batches, calibration = calibration_batches(
            dataset, spec, config.calibration_images, config.calibration_batch_size
        )
        super().__init__(analysis, config, calibration)

    def score(self, session) -> float:
        return evaluate_accuracy(session, self.dataset, self.spec, batch_size=self.config.batch_size).top1


class FidelityReward(_PrunedModelReward):
    """Fidelity to the original's outputs (``reference``) on a fixed reward set; needs no labels."""

    def __init__(
        self,
        analysis: ModelAnalysis,
        feeder: Feeder,
        reference: ReferenceOutputs,
        config: RewardConfig = RewardConfig(),
    ) -> None:
        self.feeder = feeder
        self.reference = reference
        calibration = calibration_feeds(feeder, config.calibration_images, config.calibration_batch_size)
        super().__init__(analysis, config, calibration)

    def score(self, session) -> float:
        return evaluate_fidelity(session, self.feeder, self.reference, batch_size=self.config.batch_size).score
