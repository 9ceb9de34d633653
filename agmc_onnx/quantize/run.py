"""The quantization stage end to end: calibrate on training images, pick the form, measure what changed."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from agmc_onnx.cost import PairedLatency, check_target_available, get_profile, measure_paired
from agmc_onnx.data import ImageDataset, PreprocessSpec, load_splits, sample_subset, spec_from_model
from agmc_onnx.data.feeds import Feeder, model_inputs
from agmc_onnx.errors import PreconditionError
from agmc_onnx.evaluate import AccuracyResult, evaluate_accuracy
from agmc_onnx.fidelity import FidelityResult, evaluate_fidelity, run_outputs
from agmc_onnx.quantize.stage import QUANT_FORMATS, QuantizedModel, check_quantizable, quantize_model
from agmc_onnx.search.recalibrate import calibration_batches

__all__ = [
    "FORMAT_CHOICES",
    "QuantizeConfig",
    "FormatChoice",
    "QuantizeReport",
    "choose_format",
    "calibration_inputs",
    "run_quantize",
]

log = logging.getLogger(__name__)

FORMAT_CHOICES = ("auto",) + QUANT_FORMATS
StageCallback = Callable[[str], None]


@dataclass(frozen=True)
class QuantizeConfig:
    quant_format: str = "auto"  # "auto": quantize in both forms and keep the one measured faster on target
    target: str = "mobile-cpu"
    calibration_images: int = 256
    calibration_batch_size: int = 32
    test_images: int | None = None  # None: the whole test split
    rounds: int = 10  # A-B-B-A rounds of each paired latency measurement
    seed: int = 0

    def __post_init__(self) -> None:
        if self.quant_format not in FORMAT_CHOICES:
            raise PreconditionError(
                f"unknown quantization format {self.quant_format!r}; choose one of {FORMAT_CHOICES}"
            )
        if self.calibration_images < 1:
            raise PreconditionError(f"calibration needs at least 1 image, got {self.calibration_images}")


@dataclass(frozen=True)
class FormatChoice:
    """The kept quantized model; with ``auto``, ``qoperator_vs_qdq`` is their paired latency (A = QOperator,
    B = QDQ: a speed-up above 1 means QDQ was faster)."""

    quantized: QuantizedModel
    qoperator_vs_qdq: PairedLatency | None = None


@dataclass(frozen=True)
class QuantizeReport:
    choice: FormatChoice
    speedup: PairedLatency  # A = fp32 input model, B = quantized model
    accuracy_before: AccuracyResult | None  # None when the test images have no labels
    accuracy_after: AccuracyResult | None
    n_calibration_images: int
    target: str
    fidelity: FidelityResult | None = None  # INT8 against fp32 outputs, measured when there are no labels

    @property
    def quantized(self) -> QuantizedModel:
        return self.choice.quantized


def calibration_inputs(train: ImageDataset, spec: PreprocessSpec, config: QuantizeConfig) -> list[np.ndarray]:
    """Class-balanced model inputs from training images, in batches."""
    _, batches = calibration_batches(train, spec, config.calibration_images, config.calibration_batch_size)
    return batches


def choose_format(
    model: onnx.ModelProto,
    calibration: Sequence[np.ndarray],
    quant_format: str = "auto",
    target: str = "mobile-cpu",
    rounds: int = 10,
) -> FormatChoice:
    """Quantize in ``quant_format``; with ``auto``, in both forms, timed paired on ``target``, faster kept."""
    if quant_format != "auto":
        return FormatChoice(quantize_model(model, calibration, quant_format))
    qoperator = quantize_model(model, calibration, "qoperator")
    qdq = quantize_model(model, calibration, "qdq")
    paired = measure_paired(qoperator.model, qdq.model, target, n_rounds=rounds)
    log.info("QOperator vs QDQ on %s: QDQ speed-up %.3f", target, paired.speedup)
    return FormatChoice(qdq if paired.speedup > 1.0 else qoperator, paired)


def run_quantize(
    model: onnx.ModelProto,
    data_path: str | os.PathLike,
    config: QuantizeConfig = QuantizeConfig(),
    on_stage: StageCallback | None = None,
    *,
    spec: PreprocessSpec | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> QuantizeReport:
    """Quantize ``model`` with calibration on training images; test top-1 before and after (without labels:
    the INT8 model's fidelity to the fp32 outputs), paired speed-up. ``spec`` defaults to the model's."""
    stage = on_stage or (lambda message: None)
    check_quantizable(model)
    check_target_available(get_profile(config.target))
    spec = spec or spec_from_model(model)
    splits = load_splits(data_path, spec, reward_size=1, seed=config.seed, cache_dir=cache_dir)
    train, test = splits.finetune, splits.test
    if config.test_images is not None:
        test = sample_subset(test, config.test_images, config.seed)
    calibration = calibration_inputs(train, spec, config)
    n_calibration = sum(len(batch) for batch in calibration)
    stage(f"calibrating on {n_calibration} class-balanced training images, format {config.quant_format}")
    choice = choose_format(model, calibration, config.quant_format, config.target, config.rounds)
    stage(f"evaluating fp32 and INT8 on {test.n_images} test images")
    before = after = fidelity = None
    if test.labelled:
        before = evaluate_accuracy(model, test, spec)
        after = evaluate_accuracy(choice.quantized.model, test, spec)
    else:
        feeder = Feeder(test, model_inputs(model), spec)
        fidelity = evaluate_fidelity(choice.quantized.model, feeder, run_outputs(model, feeder))
    stage(f"timing fp32 vs INT8 on {config.target}, {config.rounds} paired rounds")
    speedup = measure_paired(model, choice.quantized.model, config.target, n_rounds=config.rounds)
    return QuantizeReport(choice, speedup, before, after, n_calibration, config.target, fidelity)
