"""The INT8 stage of ``compress``: quantize the fine-tuned model, calibrated on its fine-tuning images,
in the form measured faster on the target."""

from __future__ import annotations

import onnx

from agmc_onnx.data import ImageDataset, PreprocessSpec
from agmc_onnx.data.feeds import Feeder
from agmc_onnx.errors import PreconditionError
from agmc_onnx.quantize import FormatChoice, QuantizeConfig, calibration_inputs, choose_format
from agmc_onnx.search.recalibrate import calibration_feeds

__all__ = ["QUANTIZE_CHOICES", "quantize_stage", "search_precision"]

QUANTIZE_CHOICES = ("none", "int8")


def search_precision(quantize: str | None) -> str:
    """The latency-table precision the search predicts with: the form that will ship."""
    if quantize in (None, "none"):
        return "fp32"
    if quantize == "int8":
        return "int8-qoperator"  # onnxruntime's fast CPU form; `auto` keeps QDQ only where measured faster
    raise PreconditionError(f"quantize is {quantize!r}; choose one of {', '.join(QUANTIZE_CHOICES)}")


def quantize_stage(
    model: onnx.ModelProto,
    train: ImageDataset | Feeder,
    spec: PreprocessSpec | None,
    target: str,
    calibration_images: int = 256,
) -> FormatChoice:
    """INT8 form of ``model`` (per channel, calibrated on class-balanced ``train`` images, or on the inputs
    of any data bound to a one-input model), format ``auto``."""
    config = QuantizeConfig(target=target, calibration_images=calibration_images)
    if isinstance(train, Feeder):
        (name,) = (info.name for info in train.inputs[:1])
        feeds = calibration_feeds(train, calibration_images, config.calibration_batch_size)
        calibration = [batch[name] for batch in feeds]
    else:
        calibration = calibration_inputs(train, spec, config)
    return choose_format(model, calibration, "auto", target, config.rounds)
