"""INT8 quantization of a (pruned) model: onnxruntime's static quantizer, calibrated on training images."""

from agmc_onnx.quantize.run import (
    FORMAT_CHOICES,
    FormatChoice,
    QuantizeConfig,
    QuantizeReport,
    calibration_inputs,
    choose_format,
    run_quantize,
)
from agmc_onnx.quantize.stage import (
    QUANT_FORMATS,
    FloatOperator,
    QuantizedModel,
    check_quantizable,
    float_operators,
    needs_reduced_range,
    quantize_model,
)

__all__ = [
    "FORMAT_CHOICES",
    "QUANT_FORMATS",
    "FloatOperator",
    "FormatChoice",
    "QuantizeConfig",
    "QuantizeReport",
    "QuantizedModel",
    "calibration_inputs",
    "check_quantizable",
    "needs_reduced_range",
    "choose_format",
    "float_operators",
    "quantize_model",
    "run_quantize",
]
