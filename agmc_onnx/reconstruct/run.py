"""One call: a pruned model and calibration images in, its layers re-fitted and BN re-estimated out."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import onnx
import onnx_graphsurgeon as gs

from agmc_onnx.analysis import ModelAnalysis
from agmc_onnx.data import ImageDataset, PreprocessSpec
from agmc_onnx.data.feeds import Feeder
from agmc_onnx.errors import DataError
from agmc_onnx.passes.base import PassManager
from agmc_onnx.passes.reconstruct_weights import ReconstructWeightsPass, RefitSettings, images_needed
from agmc_onnx.passes.reestimate_batchnorm import ReestimateBatchNormPass
from agmc_onnx.plan import ChannelSelection
from agmc_onnx.reconstruct.consumers import find_consumers
from agmc_onnx.search.recalibrate import calibration_batches, calibration_feeds

__all__ = ["ReconstructConfig", "ReconstructResult", "reconstruct_pruned", "DEFAULT_CALIBRATION_IMAGES"]

log = logging.getLogger(__name__)

# 1,024 over 256: ResNet-56 at 50 % MACs 84.1 vs 83.1 % on the full test set, in 7 s; with ``downstream``
# 85.7 % in 13 s (benchmarks/results/accuracy.md, reconstruction settings)
DEFAULT_CALIBRATION_IMAGES = 1024


@dataclass(frozen=True)
class ReconstructConfig:
    # None: ``base_images``, or twice the minimum when a layer has more unknowns (a system with barely
    # more rows than unknowns fits the calibration images and nothing else), at most the whole dataset
    calibration_images: int | None = None
    base_images: int = DEFAULT_CALIBRATION_IMAGES
    refit: RefitSettings = RefitSettings()
    batch_size: int = 128
    # Off by default: the re-fit already makes each layer's output match the original's before its
    # BatchNormalization, so the original statistics fit; re-estimating them on the calibration images
    # measured 1.5 points worse on ResNet-20 at 67 % MACs (1,000 test images; benchmarks/accuracy.py
    # reports both columns).
    recalibrate_bn: bool = False
    # Re-fit every weighted layer after the first pruned one too (not only those that lost input
    # channels), so later layers absorb what earlier ones could not reproduce: ResNet-56 +1.6 points,
    # MobileNetV2 -0.15 (within the test set's noise) at 1,024 images, for twice the time.
    downstream: bool = True


@dataclass(frozen=True)
class ReconstructResult:
    model: onnx.ModelProto
    n_images: int
    layers_refitted: int
    seconds: float


def reconstruct_pruned(
    analysis: ModelAnalysis,
    selection: ChannelSelection,
    pruned: onnx.ModelProto,
    dataset: ImageDataset | Feeder,
    spec: PreprocessSpec | None,
    config: ReconstructConfig = ReconstructConfig(),
) -> ReconstructResult:
    """Re-fit every layer that lost input channels so it reproduces ``analysis.model`` on class-balanced
    images of ``dataset`` (and, with ``recalibrate_bn``, re-estimate BatchNormalization statistics on
    the same images). ``dataset`` may also be any data bound to a one-input model (a ``Feeder``, such as
    arrays keyed by the input's name); ``spec`` is then unused."""
    started = time.perf_counter()
    graph = gs.import_onnx(pruned)
    present = {node.name for node in graph.nodes}
    found = find_consumers(analysis, selection, config.downstream)
    consumers = tuple(c for c in found if c.node in present)  # not in a deleted branch
    needed = images_needed(graph, consumers, config.refit)
    available = dataset.n_samples if isinstance(dataset, Feeder) else len(dataset.labels)
    n_images = config.calibration_images or min(available, max(config.base_images, 2 * needed))
    if n_images > available or available < needed:
        raise DataError(
            f"reconstruction wants {max(n_images, needed)} calibration images (at least {needed} for the "
            f"largest layer's unknowns) but the data has {available}"
        )
    batches = _calibration(dataset, spec, n_images, config.batch_size)
    passes = [ReconstructWeightsPass(analysis.model, consumers, batches, config.refit)]
    if config.recalibrate_bn:
        passes.append(ReestimateBatchNormPass(batches))
    model, stats = PassManager(passes).run(pruned)
    refitted = int(stats["ReconstructWeightsPass"].get("layers_refitted", 0))
    log.info("re-fitted %d of %d layers on %d images", refitted, len(consumers), n_images)
    return ReconstructResult(model, n_images, refitted, time.perf_counter() - started)




def _calibration(dataset: ImageDataset | Feeder, spec: PreprocessSpec | None, n: int, batch_size: int) -> list:
    if not isinstance(dataset, Feeder):
        return calibration_batches(dataset, spec, n, batch_size)[1]
    if len(dataset.inputs) != 1:
        names = ", ".join(info.name for info in dataset.inputs)
        raise DataError(f"reconstruction feeds one input, but the model has {len(dataset.inputs)} ({names})")
    (name,) = (info.name for info in dataset.inputs)
    return [feeds[name] for feeds in calibration_feeds(dataset, n, batch_size)]
