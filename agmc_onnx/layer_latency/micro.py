"""One-operator models at given channel counts, in fp32 or INT8, and their onnxruntime latency."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from agmc_onnx.cost import TargetProfile, create_session, random_inputs
from agmc_onnx.cost.session import quiet_default_logger
from agmc_onnx.errors import PreconditionError
from agmc_onnx.io import load_model, save_model
from agmc_onnx.layer_latency.signature import LayerSignature

__all__ = ["PRECISIONS", "micro_model", "measure_point"]

PRECISIONS = ("fp32", "int8-qoperator", "int8-qdq")


def micro_model(signature: LayerSignature, c_in: int, c_out: int, batch_size: int = 1) -> onnx.ModelProto:
    """The operator alone with seeded random weights: input channels ``c_in``, output channels ``c_out``
    (for grouped convolutions both are numbers of conv groups)."""
    rng = np.random.default_rng(0)
    shape = [batch_size, *signature.input_shape[1:]]
    if signature.per_group is not None:
        groups = c_in
        c_in, c_out = groups * signature.per_group[0], groups * signature.per_group[1]
    shape[signature.channel_axis] = c_in
    if signature.op_type == "Conv":
        weight_shape = (c_out, c_in // (groups if signature.per_group else 1), *signature.kernel)
        attrs = {"kernel_shape": list(signature.kernel), "group": groups if signature.per_group else 1}
        attrs.update({k: list(v) for k, v in (("strides", signature.strides), ("pads", signature.pads),
                                              ("dilations", signature.dilations)) if v})
        inputs = ["x", "w", "b"]
    elif signature.op_type == "Gemm":
        weight_shape, attrs, inputs = (c_out, c_in), {"transB": 1}, ["x", "w", "b"]
    else:
        weight_shape, attrs, inputs = (c_in, c_out), {}, ["x", "w"]
    fan_in = int(np.prod(weight_shape[1:])) if signature.op_type != "MatMul" else c_in
    initializers = [
        numpy_helper.from_array((rng.standard_normal(weight_shape) / np.sqrt(fan_in)).astype(np.float32), "w"),
        numpy_helper.from_array((rng.standard_normal(c_out) * 0.1).astype(np.float32), "b"),
    ][: len(inputs) - 1]
    node = helper.make_node(signature.op_type, inputs, ["y"], name="layer", **attrs)
    graph = helper.make_graph(
        [node], "layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def quantized_micro(model: onnx.ModelProto, quant_format: str) -> onnx.ModelProto:
    """INT8 form of a one-operator model. In QOperator form the Quantize/DequantizeLinear around the
    integer operator are removed (inside a quantized network, activations stay 8-bit between layers)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    batch = {"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    with tempfile.TemporaryDirectory(prefix="agmc-layer-") as folder, _quiet_preprocess_advice(), \
            quiet_default_logger():
        source, target = Path(folder) / "layer.onnx", Path(folder) / "layer-int8.onnx"
        save_model(model, source)
        quantize_static(
            str(source), str(target), _OneBatch(batch),
            quant_format=QuantFormat.QOperator if quant_format == "qoperator" else QuantFormat.QDQ,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )
        quantized = load_model(target, check=False)
    return _strip_quantize_io(quantized) if quant_format == "qoperator" else quantized


class _DropPreprocessAdvice(logging.Filter):
    """The quantizer advises pre-processing on the root logger; a one-operator model needs none."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()


@contextlib.contextmanager
def _quiet_preprocess_advice():
    root, advice = logging.getLogger(), _DropPreprocessAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


class _OneBatch:
    def __init__(self, batch: dict[str, np.ndarray]) -> None:
        self._batches = iter([batch])

    def get_next(self):
        return next(self._batches, None)


def _strip_quantize_io(model: onnx.ModelProto) -> onnx.ModelProto:
    nodes = list(model.graph.node)
    if len(nodes) != 3 or nodes[0].op_type != "QuantizeLinear" or nodes[-1].op_type != "DequantizeLinear":
        return model  # the quantizer left the operator in float: time what it produced
    core = nodes[1]
    graph = helper.make_graph(
        [core], "layer", [helper.make_tensor_value_info(core.input[0], TensorProto.UINT8, None)],
        [helper.make_tensor_value_info(core.output[0], TensorProto.UINT8, None)], list(model.graph.initializer),
    )
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    uint8_shape = helper.make_tensor_type_proto(TensorProto.UINT8, shape).tensor_type.shape
    graph.input[0].type.tensor_type.shape.CopyFrom(uint8_shape)
    stripped = helper.make_model(graph, opset_imports=list(model.opset_import))
    stripped.ir_version = model.ir_version
    return stripped


def measure_point(
    signature: LayerSignature, c_in: int, c_out: int, profile: TargetProfile, precision: str,
    *, runs: int = 25, warmup_runs: int = 3, block: int = 5, tolerance: float = 0.01,
) -> float:
    """Median latency in ms of the operator at (c_in, c_out) on ``profile`` in ``precision``.

    Timed in blocks of ``block`` runs, at most ``runs``: it stops once another block moves the median by
    less than ``tolerance`` (a stable point needs 10 runs, a noisy one up to ``runs``)."""
    if precision not in PRECISIONS:
        raise PreconditionError(f"unknown table precision {precision!r}; choose one of {PRECISIONS}")
    model = micro_model(signature, c_in, c_out, profile.batch_size)
    if precision != "fp32":
        model = quantized_micro(model, precision.removeprefix("int8-"))
    session = create_session(model, profile)
    feeds = random_inputs(session, profile.batch_size)
    run, clock = session.run, time.perf_counter
    for _ in range(warmup_runs):
        run(None, feeds)
    times: list[float] = []
    previous = None
    while len(times) < runs:
        for _ in range(min(block, runs - len(times))):
            started = clock()
            run(None, feeds)
            times.append(clock() - started)
        median = float(np.median(times))
        if previous is not None and abs(median - previous) <= tolerance * previous:
            break
        previous = median
    return float(np.median(times) * 1000.0)
