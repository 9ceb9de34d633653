"""INT8 quantization: both ONNX forms compute what the float model computes, fp32 leftovers are named,
and a model without quantizable operators is refused."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import tiny_models
from onnx import TensorProto, numpy_helper
from tiny_models import TinyNet

from agmc_onnx.errors import PreconditionError
from agmc_onnx.quantize import float_operators, needs_reduced_range, quantize_model


def _batches(shape=(3, 8, 8), n=4, seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((8, *shape)).astype(np.float32) for _ in range(n)]


def _run(model, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": batch})[0]


@pytest.mark.parametrize("quant_format", ["qoperator", "qdq"])
def test_quantized_model_tracks_the_float_model(quant_format: str) -> None:
    model = tiny_models.conv_bn_relu()
    quantized = quantize_model(model, _batches(), quant_format)
    ops = {node.op_type for node in quantized.model.graph.node}
    assert ("QLinearConv" in ops) == (quant_format == "qoperator")
    assert quantized.n_quantized > 0 and quantized.portable == (quant_format == "qdq")
    batch = _batches(seed=1)[0]
    expected, got = _run(model, batch), _run(quantized.model, batch)
    relative_rms = np.sqrt(np.mean((got - expected) ** 2) / np.mean(expected**2))
    assert relative_rms < 0.2  # 8-bit rounding error (measured 0.13), not a different model (about 1)


def test_unquantizable_operators_are_listed_as_fp32() -> None:
    quantized = quantize_model(tiny_models.instance_norm_resize_pad(), _batches(), "qoperator")
    listed = {op.op_type for op in quantized.float_operators}
    assert "InstanceNormalization" in listed  # no QLinear kernel exists for it
    assert "Conv" not in listed


def test_float_operators_of_a_float_model_are_all_compute_ops() -> None:
    model = tiny_models.conv_bn_relu()
    assert [op.op_type for op in float_operators(model, "qoperator")] == [n.op_type for n in model.graph.node]


def test_model_without_weighted_operators_is_refused() -> None:
    net = TinyNet("relu_only")
    model = net.build(net.node("Relu", ["input"]))
    with pytest.raises(PreconditionError, match="nothing to quantize"):
        quantize_model(model, _batches(), "qoperator")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(PreconditionError, match="unknown quantization format"):
        quantize_model(tiny_models.conv_bn_relu(), _batches(), "int4")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"sse4_1", "avx2", "fma"}, True),  # AVX2 without VNNI: U8S8 pair sums saturate at 16 bits
        ({"avx2", "avx512f", "avx512_vnni"}, False),
        ({"avx2", "avx_vnni"}, False),
        ({"asimd", "fp"}, False),  # not x86
        (set(), False),
    ],
)
def test_weights_use_seven_bits_only_where_the_cpu_lacks_vnni(flags, expected) -> None:
    assert needs_reduced_range(frozenset(flags)) is expected


@pytest.mark.parametrize("reduce_range", [False, True])
def test_reduced_range_keeps_weights_within_seven_bits(reduce_range: bool) -> None:
    quantized = quantize_model(tiny_models.conv_bn_relu(), _batches(), "qoperator", reduce_range=reduce_range)
    weights = [
        numpy_helper.to_array(init) for init in quantized.model.graph.initializer if init.data_type == TensorProto.INT8
    ]
    assert weights and quantized.reduced_range is reduce_range
    widest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    assert (widest <= 64) if reduce_range else (widest == 127)  # per-channel scales reach the range's end
