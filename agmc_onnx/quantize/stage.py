"""Static INT8 quantization through ``onnxruntime.quantization``, per channel, in either ONNX form.

The two forms differ in where they run fast. *QOperator* replaces each quantized operator by its integer
kernel (``QLinearConv``, ``QLinearAdd``…): onnxruntime's CPU kernels run it directly, but other runtimes
(OpenVINO, TensorRT) do not read it. *QDQ* keeps the float operators between QuantizeLinear /
DequantizeLinear pairs: every runtime reads it and fuses what it can.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from agmc_onnx.errors import PreconditionError
from agmc_onnx.io import load_model, save_model

__all__ = [
    "QUANT_FORMATS",
    "QuantizedModel",
    "FloatOperator",
    "quantize_model",
    "float_operators",
    "check_quantizable",
    "needs_reduced_range",
]

log = logging.getLogger(__name__)

QUANT_FORMATS = ("qoperator", "qdq")
# Operators whose weights onnxruntime's static quantizer turns into INT8 (the ones that carry the MACs).
_WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
_QUANT_IO_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
_INTEGER_OPS = frozenset({"ConvInteger", "MatMulInteger", "QGemm", "QAttention", "DynamicQuantizeLinear"})


@dataclass(frozen=True)
class FloatOperator:
    """An operator of the quantized model that still computes in floating point."""

    op_type: str
    name: str


@dataclass(frozen=True)
class QuantizedModel:
    model: onnx.ModelProto
    quant_format: str  # one of QUANT_FORMATS
    float_operators: tuple[FloatOperator, ...]
    n_quantized: int  # operators that compute in INT8
    reduced_range: bool = False  # 7-bit weights (see ``needs_reduced_range``)

    @property
    def portable(self) -> bool:
        """QDQ models load in other runtimes; QOperator models are onnxruntime's own form."""
        return self.quant_format == "qdq"


def check_quantizable(model: onnx.ModelProto) -> None:
    """Raise PreconditionError when the model has no operator whose weights INT8 quantization covers."""
    found = {node.op_type for node in model.graph.node} & _WEIGHTED_OPS
    if not found:
        ops = sorted({node.op_type for node in model.graph.node})
        raise PreconditionError(
            f"nothing to quantize: the model has no {', '.join(sorted(_WEIGHTED_OPS))} operator "
            f"(it uses {', '.join(ops[:12])}); INT8 quantization would not change it"
        )


def needs_reduced_range(cpu_flags: frozenset[str] | None = None) -> bool:
    """Whether INT8 weights should use 7 bits on this CPU.

    On x86 without VNNI, onnxruntime's U8S8 kernels multiply with VPMADDUBSW, whose 16-bit pair sums
    saturate when weights use the full signed 8-bit range (onnxruntime's quantization guide). Measured
    here on an AVX2 CPU: ResNet-56 INT8 QOperator 86.7 % with 8-bit weights, 89.7 % with 7-bit, fp32
    90.2 % (1,000 test images). VNNI sums in 32 bits, so the full range is safe there.
    """
    flags = _cpu_flags() if cpu_flags is None else cpu_flags
    x86_simd = {"avx2", "avx512f", "sse4_1"} & flags
    vnni = {"avx512_vnni", "avx_vnni", "amx_int8"} & flags
    return bool(x86_simd) and not vnni


def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: onnxruntime's default (full range) applies
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def quantize_model(
    model: onnx.ModelProto,
    calibration: Sequence[np.ndarray],
    quant_format: str = "qoperator",
    *,
    per_channel: bool = True,
    reduce_range: bool | None = None,
) -> QuantizedModel:
    """Pre-process (shape inference, BatchNorm folding), calibrate on ``calibration`` batches, quantize.

    Activations are unsigned and weights signed 8-bit (the U8S8 pair onnxruntime's x86 kernels prefer),
    weights per output channel; ``reduce_range`` (None: ``needs_reduced_range()`` on this CPU) keeps
    weights to 7 bits. ``model`` is not modified.
    """
    if reduce_range is None:
        reduce_range = needs_reduced_range()
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    from agmc_onnx.cost.session import quiet_default_logger

    if quant_format not in QUANT_FORMATS:
        raise PreconditionError(f"unknown quantization format {quant_format!r}; choose one of {QUANT_FORMATS}")
    check_quantizable(model)
    if not calibration:
        raise PreconditionError("INT8 calibration needs at least one batch of input images")
    input_name = _single_input(model)
    with tempfile.TemporaryDirectory(prefix="agmc-quantize-") as folder, quiet_default_logger():
        prepared, quantized = Path(folder) / "prepared.onnx", Path(folder) / "quantized.onnx"
        save_model(model, Path(folder) / "input.onnx")
        quant_pre_process(str(Path(folder) / "input.onnx"), str(prepared))
        quantize_static(
            str(prepared),
            str(quantized),
            _BatchReader(input_name, calibration, _fixed_batch(model)),
            quant_format=QuantFormat.QOperator if quant_format == "qoperator" else QuantFormat.QDQ,
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        result = load_model(quantized, check=False)
    for key, value in ((p.key, p.value) for p in model.metadata_props):
        if key not in {p.key for p in result.metadata_props}:
            result.metadata_props.add(key=key, value=value)
    floats = float_operators(result, quant_format)
    n_quantized = _count_quantized(result, quant_format, floats)
    if n_quantized == 0:
        raise PreconditionError(
            "onnxruntime's quantizer left every operator in floating point; nothing was quantized"
        )
    log.info("quantized %d operators (%s%s); %d left fp32", n_quantized, quant_format,
             ", 7-bit weights" if reduce_range else "", len(floats))
    return QuantizedModel(result, quant_format, floats, n_quantized, reduce_range)


class _BatchReader:
    """onnxruntime's CalibrationDataReader protocol over a list of input batches."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray], fixed_batch: int | None) -> None:
        self._input_name = input_name
        step = fixed_batch  # a model with a fixed batch dimension is fed slices of exactly that size
        self._batches = iter(
            [b[i : i + step] for b in batches for i in range(0, len(b) - step + 1, step)] if step else batches
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    def __iter__(self):  # the quantizer's newer versions iterate the reader
        return iter(self.get_next, None)


def _single_input(model: onnx.ModelProto) -> str:
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value.name for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise PreconditionError(
            f"INT8 calibration feeds one image input, but the model has {len(inputs)} inputs ({', '.join(inputs)})"
        )
    return inputs[0]


def _fixed_batch(model: onnx.ModelProto) -> int | None:
    initializers = {init.name for init in model.graph.initializer}
    value = next(v for v in model.graph.input if v.name not in initializers)
    dims = value.type.tensor_type.shape.dim
    return int(dims[0].dim_value) if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None


def float_operators(model: onnx.ModelProto, quant_format: str) -> tuple[FloatOperator, ...]:
    """Compute operators that read floating-point activations (Quantize/DequantizeLinear aside).

    In QDQ form an operator counts as quantized when its activation input comes from a DequantizeLinear
    (the runtime fuses the pattern); in QOperator form, when that input is an integer tensor.
    """
    float_tensors = _float_tensors(model)
    dequantized = {out for node in model.graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    constants = {init.name for init in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if node.op_type in _QUANT_IO_OPS or not node.input or node.input[0] in constants:
            continue
        activation = node.input[0]
        if activation not in float_tensors:
            continue
        if quant_format == "qdq" and activation in dequantized:
            continue
        found.append(FloatOperator(node.op_type, node.name))
    return tuple(found)


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of floating-point activations, propagated forward (nodes are topologically sorted)."""
    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}
    floats = {v.name for v in model.graph.input if v.type.tensor_type.elem_type in float_types}
    floats |= {init.name for init in model.graph.initializer if init.data_type in float_types}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            floats.update(node.output)
        elif node.op_type == "QuantizeLinear" or node.op_type.startswith("QLinear") or node.op_type in _INTEGER_OPS:
            continue
        elif node.op_type in {"Shape", "Size"}:
            continue
        elif node.input and node.input[0] in floats:
            floats.update(node.output)
    return floats


def _count_quantized(model: onnx.ModelProto, quant_format: str, floats: Sequence[FloatOperator]) -> int:
    if quant_format == "qoperator":
        return sum(1 for n in model.graph.node if n.op_type.startswith("QLinear") or n.op_type in _INTEGER_OPS)
    float_names = {op.name for op in floats}
    return sum(
        1
        for node in model.graph.node
        if node.op_type in _WEIGHTED_OPS and node.name not in float_names
    )
