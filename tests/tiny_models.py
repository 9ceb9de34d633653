"""Small hand-built ONNX graphs, one per channel-flow rule and per graph shape users report as broken."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from agmc_onnx.plan import PruningPlan, uniform_plan


class TinyNet:
    """Builds a float32 model with input ``input`` (dynamic batch) in a few lines per architecture."""

    def __init__(self, name: str, input_shape: tuple[int, ...] = (3, 8, 8), seed: int = 0) -> None:
        self.name = name
        self.input_shape = input_shape
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def const(self, array: np.ndarray, prefix: str = "c") -> str:
        name = self._name(prefix)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, *shape: int) -> str:
        return self.const(self.rng.standard_normal(shape).astype(np.float32) * 0.5, "w")

    def node(self, op: str, inputs: list[str], n_outputs: int = 1, **attrs) -> str | list[str]:
        outputs = [self._name(f"{op.lower()}_out") for _ in range(n_outputs)]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=self._name(op), **attrs))
        return outputs[0] if n_outputs == 1 else outputs

    def conv(
        self, x: str, c_in: int, c_out: int, k: int = 3, group: int = 1, bias: bool = True, stride: int = 1
    ) -> str:
        inputs = [x, self.weight(c_out, c_in // group, k, k)]
        if bias:
            inputs.append(self.const(self.rng.standard_normal(c_out).astype(np.float32) * 0.1, "b"))
        return self.node(
            "Conv", inputs, kernel_shape=[k, k], pads=[k // 2] * 4, group=group, strides=[stride] * 2
        )

    def bn(self, x: str, c: int) -> str:
        scale = self.const((self.rng.random(c) + 0.5).astype(np.float32))
        shift = self.const(self.rng.standard_normal(c).astype(np.float32) * 0.1)
        mean = self.const(self.rng.standard_normal(c).astype(np.float32) * 0.1)
        var = self.const((self.rng.random(c) + 0.5).astype(np.float32))
        return self.node("BatchNormalization", [x, scale, shift, mean, var])

    def gemm(self, x: str, k: int, n: int) -> str:
        return self.node("Gemm", [x, self.weight(n, k), self.const(np.zeros(n, np.float32) + 0.1)], transB=1)

    def build(self, *outputs: str, opset: int = 17) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            self.name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *self.input_shape])],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
            self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        inferred_graph = onnx.shape_inference.infer_shapes(model).graph
        inferred = {v.name: v for v in [*inferred_graph.value_info, *inferred_graph.output]}
        for value in model.graph.output:
            value.type.CopyFrom(inferred[value.name].type)
        onnx.checker.check_model(model, full_check=True)
        return model


def conv_bn_relu() -> onnx.ModelProto:
    net = TinyNet("conv_bn_relu")
    x = net.node("Relu", [net.bn(net.conv("input", 3, 8), 8)])
    return net.build(net.conv(x, 8, 4))


def residual_chain(depth: int = 4, batchnorm: bool = False) -> onnx.ModelProto:
    net = TinyNet("residual_chain")
    x = net.node("Relu", [net.conv("input", 3, 8)])
    for _ in range(depth):
        branch = net.conv(net.node("Relu", [net.conv(x, 8, 8)]), 8, 8)
        branch = net.bn(branch, 8) if batchnorm else branch
        x = net.node("Relu", [net.node("Add", [branch, x])])
    return net.build(net.conv(x, 8, 4))


def concat_same_tensor() -> onnx.ModelProto:
    net = TinyNet("concat_same_tensor")
    x = net.node("Relu", [net.conv("input", 3, 8)])
    return net.build(net.conv(net.node("Concat", [x, x], axis=1), 16, 4))


def concat_different_sources() -> onnx.ModelProto:
    net = TinyNet("concat_different_sources")
    a, b = net.conv("input", 3, 8), net.conv("input", 3, 6, k=1)
    return net.build(net.conv(net.node("Concat", [a, b], axis=1), 14, 4))


def concat_then_add() -> onnx.ModelProto:
    net = TinyNet("concat_then_add")
    a, b, c = net.conv("input", 3, 8), net.conv("input", 3, 8), net.conv("input", 3, 16)
    x = net.node("Add", [net.node("Concat", [a, b], axis=1), c])
    return net.build(net.conv(x, 16, 4))


def depthwise_after_producer() -> onnx.ModelProto:
    net = TinyNet("depthwise_after_producer")
    x = net.node(
        "Clip", [net.bn(net.conv("input", 3, 8, k=1), 8), net.const(np.float32(0)), net.const(np.float32(6))]
    )
    x = net.node("Relu", [net.bn(net.conv(x, 8, 8, group=8), 8)])
    return net.build(net.conv(x, 8, 4, k=1))


def grouped_conv() -> onnx.ModelProto:
    net = TinyNet("grouped_conv")
    x = net.node("Relu", [net.conv("input", 3, 16, k=1)])
    x = net.node("Relu", [net.conv(x, 16, 16, group=4)])
    return net.build(net.conv(x, 16, 4, k=1))


def grouped_conv_two_towers() -> onnx.ModelProto:
    """Two conv groups of 6 channels: more channels per group than groups, so it prunes inside the groups."""
    net = TinyNet("grouped_conv_two_towers")
    x = net.node("Relu", [net.conv("input", 3, 12, k=1)])
    x = net.node("Relu", [net.conv(x, 12, 12, group=2)])
    return net.build(net.conv(x, 12, 4, k=1))


def shufflenet_v1_unit(width: int = 24, groups: int = 3) -> onnx.ModelProto:
    """ShuffleNet V1's unit: grouped 1×1, channel shuffle, depthwise 3×3, grouped 1×1, residual add.

    At width 24 with 3 groups the shuffled channel units (3 positions each) do not all fall inside one
    group of the second grouped conv: two of them straddle two groups and are kept whole.
    """
    net = TinyNet("shufflenet_v1_unit", (3, 4, 4))
    stem = net.node("Relu", [net.bn(net.conv("input", 3, width, k=1), width)])
    x = net.node("Relu", [net.bn(net.conv(stem, width, width, k=1, group=groups, bias=False), width)])
    x = net.node("Reshape", [x, net.const(np.array([-1, groups, width // groups, 4, 4], dtype=np.int64))])
    x = net.node("Transpose", [x], perm=[0, 2, 1, 3, 4])
    x = net.node("Reshape", [x, net.const(np.array([-1, width, 4, 4], dtype=np.int64))])
    x = net.bn(net.conv(x, width, width, group=width, bias=False), width)
    x = net.bn(net.conv(x, width, width, k=1, group=groups, bias=False), width)
    return net.build(net.conv(net.node("Relu", [net.node("Add", [stem, x])]), width, 4, k=1))


def shufflenet_v2_stream(width: int = 16, blocks: int = 3) -> onnx.ModelProto:
    """ShuffleNetV2's stride-1 units: split in halves, a 1×1 → depthwise 3×3 → 1×1 branch on the second
    half, concat with the first, shuffle of 2 groups. A shuffle puts each stream unit wholly into one half
    of the next split, so some units pass through and others feed the next branch: their MACs differ."""
    net = TinyNet("shufflenet_v2_stream", (3, 4, 4))
    half = width // 2
    x = net.node("Relu", [net.bn(net.conv("input", 3, width, k=1), width)])
    for _ in range(blocks):
        a, b = net.node("Split", [x, net.const(np.array([half, half], dtype=np.int64))], n_outputs=2, axis=1)
        b = net.node("Relu", [net.bn(net.conv(b, half, half, k=1, bias=False), half)])
        b = net.bn(net.conv(b, half, half, group=half, bias=False), half)
        b = net.node("Relu", [net.bn(net.conv(b, half, half, k=1, bias=False), half)])
        x = net.node("Reshape", [net.node("Concat", [a, b], axis=1), net.const(np.array([-1, 2, half, 4, 4]))])
        x = net.node("Transpose", [x], perm=[0, 2, 1, 3, 4])
        x = net.node("Reshape", [x, net.const(np.array([-1, width, 4, 4], dtype=np.int64))])
    return net.build(net.conv(x, width, 4, k=1))


def flatten_gemm() -> onnx.ModelProto:
    net = TinyNet("flatten_gemm", (3, 4, 4))
    x = net.node("Relu", [net.conv("input", 3, 8)])
    return net.build(net.gemm(net.node("Flatten", [x], axis=1), 128, 10))


def reshape_gemm() -> onnx.ModelProto:
    net = TinyNet("reshape_gemm", (3, 4, 4))
    x = net.node(
        "MaxPool", [net.node("Relu", [net.conv("input", 3, 8)])], kernel_shape=[2, 2], strides=[2, 2]
    )
    x = net.node("Reshape", [x, net.const(np.array([-1, 32], dtype=np.int64))])
    return net.build(net.gemm(x, 32, 10))


def squeeze_excitation() -> onnx.ModelProto:
    net = TinyNet("squeeze_excitation")
    x = net.node("Relu", [net.conv("input", 3, 8)])
    s = net.node("GlobalAveragePool", [x])
    s = net.node("Sigmoid", [net.conv(net.node("Relu", [net.conv(s, 8, 4, k=1)]), 4, 8, k=1)])
    return net.build(net.conv(net.node("Mul", [x, s]), 8, 4))


def channel_shuffle() -> onnx.ModelProto:
    net = TinyNet("channel_shuffle")
    x = net.conv("input", 3, 8)
    x = net.node("Reshape", [x, net.const(np.array([-1, 2, 4, 8, 8], dtype=np.int64))])
    x = net.node("Transpose", [x], perm=[0, 2, 1, 3, 4])
    x = net.node("Reshape", [x, net.const(np.array([-1, 8, 8, 8], dtype=np.int64))])
    return net.build(net.conv(net.node("Relu", [net.conv(x, 8, 8)]), 8, 4))


def split_branches() -> onnx.ModelProto:
    net = TinyNet("split_branches")
    x = net.conv("input", 3, 8)
    a, b = net.node("Split", [x, net.const(np.array([4, 4], dtype=np.int64))], n_outputs=2, axis=1)
    return net.build(net.conv(net.node("Concat", [net.conv(a, 4, 4), net.conv(b, 4, 4)], axis=1), 8, 4))


def channel_slice() -> onnx.ModelProto:
    net = TinyNet("channel_slice")
    x = net.conv("input", 3, 8)
    starts, ends, axes = (net.const(np.array([v], dtype=np.int64)) for v in (2, 6, 1))
    return net.build(net.conv(net.node("Slice", [x, starts, ends, axes]), 4, 4))


def partial_residual() -> onnx.ModelProto:
    """ReXNet's block: the residual is added to the first channels only (Slice, Add, Slice, Concat)."""
    net = TinyNet("partial_residual")
    x = net.node("Relu", [net.conv("input", 3, 8, k=1)])
    y = net.conv(x, 8, 12)
    zero, eight, end, axis = (net.const(np.array([v], dtype=np.int64)) for v in (0, 8, 12, 1))
    head = net.node("Add", [net.node("Slice", [y, zero, eight, axis]), x])
    tail = net.node("Slice", [y, eight, end, axis])
    return net.build(net.conv(net.node("Concat", [head, tail], axis=1), 12, 4, k=1))


def gemm_chain() -> onnx.ModelProto:
    net = TinyNet("gemm_chain", (16,))
    return net.build(net.gemm(net.node("Relu", [net.gemm("input", 16, 32)]), 32, 10))


def matmul_tokens() -> onnx.ModelProto:
    net = TinyNet("matmul_tokens", (5, 16))
    x = net.node("MatMul", ["input", net.weight(16, 32)])
    x = net.node("Relu", [net.node("Add", [x, net.const(np.full(32, 0.1, np.float32))])])
    return net.build(net.node("MatMul", [x, net.weight(32, 8)]))


def per_channel_constants() -> onnx.ModelProto:
    net = TinyNet("per_channel_constants")
    x = net.conv("input", 3, 8)
    x = net.node("Mul", [x, net.const(np.linspace(0.5, 1.5, 8, dtype=np.float32).reshape(1, 8, 1, 1))])
    x = net.node("Add", [x, net.const(np.linspace(-1, 1, 8, dtype=np.float32).reshape(8, 1, 1))])
    x = net.node("PRelu", [x, net.const(np.full((8, 1, 1), 0.2, np.float32))])
    return net.build(net.conv(x, 8, 4))


def conv_transpose() -> onnx.ModelProto:
    net = TinyNet("conv_transpose")
    x = net.node("Relu", [net.conv("input", 3, 8)])
    x = net.node(
        "ConvTranspose", [x, net.weight(8, 6, 2, 2), net.const(np.zeros(6, np.float32))], strides=[2, 2]
    )
    return net.build(net.conv(net.node("Relu", [x]), 6, 4))


def instance_norm_resize_pad() -> onnx.ModelProto:
    net = TinyNet("instance_norm_resize_pad")
    x = net.conv("input", 3, 8)
    x = net.node(
        "InstanceNormalization", [x, net.const(np.ones(8, np.float32)), net.const(np.zeros(8, np.float32))]
    )
    x = net.node("Resize", [x, "", net.const(np.array([1, 1, 2, 2], np.float32))], mode="nearest")
    x = net.node("Pad", [x, net.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))])
    return net.build(net.conv(x, 8, 4))


def channels_last_layernorm() -> onnx.ModelProto:
    """ConvNeXt-style block: normalisation over channels pins them, the MLP expansion stays prunable."""
    net = TinyNet("channels_last_layernorm")
    x = net.node("Transpose", [net.conv("input", 3, 8)], perm=[0, 2, 3, 1])
    x = net.node(
        "LayerNormalization",
        [x, net.const(np.ones(8, np.float32)), net.const(np.zeros(8, np.float32))],
        axis=-1,
    )
    x = net.node("Relu", [net.node("MatMul", [x, net.weight(8, 32)])])
    x = net.node("MatMul", [x, net.weight(32, 8)])
    return net.build(net.conv(net.node("Transpose", [x], perm=[0, 3, 1, 2]), 8, 4))


def pooled_head() -> onnx.ModelProto:
    net = TinyNet("pooled_head")
    x = net.node("Relu", [net.conv("input", 3, 8)])
    a = net.node("Squeeze", [net.node("GlobalAveragePool", [x]), net.const(np.array([2, 3], np.int64))])
    b = net.node("ReduceMean", [x], axes=[2, 3], keepdims=0)
    x = net.node("Unsqueeze", [net.node("Add", [a, b]), net.const(np.array([2], np.int64))])
    return net.build(net.gemm(net.node("Flatten", [x]), 8, 10))


def aliased_weights() -> onnx.ModelProto:
    """Two BatchNormalizations in different groups read one bias, the second through ``Identity``
    (the TorchScript exporter does this for bit-identical initializers)."""
    net = TinyNet("aliased_weights")
    a, b = net.conv("input", 3, 8), net.conv("input", 3, 8, k=1)
    shared = [net.const((net.rng.random(8) + 0.5).astype(np.float32)) for _ in range(4)]
    alias = net.node("Identity", [shared[1]])
    a = net.node("BatchNormalization", [a, *shared])
    b = net.node("BatchNormalization", [b, shared[0], alias, shared[2], shared[3]])
    return net.build(net.conv(net.node("Concat", [a, b], axis=1), 16, 4))


def unsupported_op() -> onnx.ModelProto:
    net = TinyNet("unsupported_op")
    x = net.node("LRN", [net.conv("input", 3, 8)], size=3)
    y = net.conv(net.node("Relu", [net.conv(x, 8, 8)]), 8, 4)
    return net.build(y)


def tiny_classifier(seed: int = 0) -> onnx.ModelProto:
    """Two conv-BN-ReLU blocks, global pooling and a 4-class Gemm head on 8x8 images."""
    net = TinyNet("tiny_classifier", (3, 8, 8), seed=seed)
    x = net.node("Relu", [net.bn(net.conv("input", 3, 16), 16)])
    x = net.node("Relu", [net.bn(net.conv(x, 16, 16), 16)])
    x = net.node("Flatten", [net.node("GlobalAveragePool", [x])])
    return net.build(net.gemm(x, 16, 4))


def no_prunable_group() -> onnx.ModelProto:
    net = TinyNet("no_prunable_group")
    return net.build(net.conv("input", 3, 4))


def _shape_entry(net: TinyNet, x: str, axis: int) -> str:
    """``x.size(axis)`` as a 1-element int64 tensor computed at run time (Shape → Gather → Unsqueeze)."""
    size = net.node("Gather", [net.node("Shape", [x]), net.const(np.array(axis, np.int64))], axis=0)
    return net.node("Unsqueeze", [size, net.const(np.array([0], np.int64))])


def _static_output(model: onnx.ModelProto, *dims) -> onnx.ModelProto:
    """Shape inference leaves the output's dimensions symbolic behind computed shapes; state them."""
    output = model.graph.output[0]
    output.type.CopyFrom(helper.make_tensor_type_proto(TensorProto.FLOAT, list(dims)))
    return model


def computed_chunks() -> onnx.ModelProto:
    """``x.chunk(2, 1)`` as torch.export writes it: Slice bounds computed from the shape (C // 2, C)."""
    net = TinyNet("computed_chunks")
    x = net.conv("input", 3, 8)
    size = _shape_entry(net, x, 1)
    half = net.node("Div", [size, net.const(np.array([2], np.int64))])
    zero, axis = net.const(np.array([0], np.int64)), net.const(np.array([1], np.int64))
    a = net.node("Slice", [x, zero, half, axis])
    b = net.node("Slice", [x, half, size, axis])
    model = net.build(net.conv(net.node("Concat", [net.conv(a, 4, 4), net.conv(b, 4, 4)], axis=1), 8, 4))
    return _static_output(model, "batch", 4, 8, 8)


def shape_of_views() -> onnx.ModelProto:
    """LeViT: ``x.flatten(2)`` as Reshape(x, Concat(Shape(x)[0:2], [-1])) and back with ``reshape_as(x)``."""
    net = TinyNet("shape_of_views", (3, 4, 4))
    x = net.conv("input", 3, 8)
    shape = net.node("Shape", [x])
    head = net.node("Slice", [shape, *(net.const(np.array([v], dtype=np.int64)) for v in (0, 2, 0))])
    flat = net.node("Reshape", [x, net.node("Concat", [head, net.const(np.array([-1], np.int64))], axis=0)])
    back = net.node("Reshape", [net.node("Relu", [flat]), shape])
    return _static_output(net.build(net.conv(back, 8, 4)), "batch", 4, 4, 4)


def computed_view() -> onnx.ModelProto:
    """``x.view(x.size(0), x.size(1), -1)`` (the channel entry computed) and ``x.view(x.size(0), -1)``."""
    net = TinyNet("computed_view")
    x = net.node("Relu", [net.conv("input", 3, 8)])
    batch = _shape_entry(net, x, 0)
    minus_one = net.const(np.array([-1], np.int64))
    tokens = net.node("Reshape", [x, net.node("Concat", [batch, _shape_entry(net, x, 1), minus_one], axis=0)])
    pooled = net.node("ReduceMean", [tokens], axes=[2], keepdims=0)
    flat = net.node("Reshape", [x, net.node("Concat", [batch, minus_one], axis=0)])
    model = net.build(net.node("Add", [net.gemm(pooled, 8, 10), net.gemm(flat, 8 * 64, 10)]))
    return _static_output(model, "batch", 10)


def gather_spatial() -> onnx.ModelProto:
    """Gather along a spatial axis (a row of the feature map) keeps the channels where they are."""
    net = TinyNet("gather_spatial")
    x = net.node("Relu", [net.conv("input", 3, 8)])
    row = net.node("Gather", [x, net.const(np.array(0, np.int64))], axis=2)  # (N, 8, W)
    cols = net.node("Gather", [row, net.const(np.array([1, 3], np.int64))], axis=-1)  # (N, 8, 2)
    return net.build(net.gemm(net.node("ReduceMean", [cols], axes=[2], keepdims=0), 8, 10))


def grouped_conv_transpose() -> onnx.ModelProto:
    """A ConvTranspose with four groups: it keeps or drops whole groups, like a grouped Conv."""
    net = TinyNet("grouped_conv_transpose")
    x = net.node("Relu", [net.conv("input", 3, 8)])
    x = net.node("ConvTranspose", [x, net.weight(8, 3, 2, 2), net.const(np.zeros(12, np.float32))], strides=[2, 2], group=4)
    return net.build(net.conv(net.node("Relu", [x]), 12, 4))


def pad_value_axes() -> onnx.ModelProto:
    """Opset-18 Pads with a constant value, with and without an axes input (only spatial axes padded)."""
    net = TinyNet("pad_value_axes")
    x = net.conv("input", 3, 8)
    pads, value = net.const(np.array([1, 0, 0, 1], np.int64)), net.const(np.array(0.5, np.float32))
    x = net.node("Pad", [x, pads, value, net.const(np.array([2, 3], np.int64))])
    x = net.node("Pad", [x, net.const(np.array([0, 0, 1, 0, 0, 0, 0, 1], np.int64)), value])  # no axes input
    return net.build(net.conv(x, 8, 4), opset=18)


def spatial_slice() -> onnx.ModelProto:
    """Every other row (a strided Slice on a spatial axis, with a steps input) keeps the channels as they are."""
    net = TinyNet("spatial_slice")
    x = net.conv("input", 3, 8)
    bounds = [net.const(np.array([v], np.int64)) for v in (0, 8, 2, 2)]  # starts, ends, axes, steps
    return net.build(net.conv(net.node("Slice", [x, *bounds]), 8, 4))


def squeezed_tokens() -> onnx.ModelProto:
    """Pooled features squeezed, a no-op ReduceSum (no axes), then unsqueezed in front of the channels."""
    net = TinyNet("squeezed_tokens")
    x = net.node("GlobalAveragePool", [net.node("Relu", [net.conv("input", 3, 8)])])
    x = net.node("Squeeze", [x, net.const(np.array([-1, 2], np.int64))])
    x = net.node("ReduceSum", [x], noop_with_empty_axes=1)  # (N, 8)
    x = net.node("Unsqueeze", [x, net.const(np.array([1], np.int64))])  # (N, 1, 8)
    return net.build(net.node("MatMul", [x, net.weight(8, 10)]), opset=18)


def equal_split() -> onnx.ModelProto:
    """A Split into equal halves with no sizes input (opset 13-17): pruning must add the sizes."""
    net = TinyNet("equal_split")
    a, b = net.node("Split", [net.conv("input", 3, 8)], n_outputs=2, axis=1)
    return net.build(net.conv(net.node("Concat", [net.conv(a, 4, 4), net.conv(b, 4, 4)], axis=1), 8, 4))



def gemm_bias_forms() -> onnx.ModelProto:
    """A Gemm without bias, then one whose bias is a single value broadcast over every output."""
    net = TinyNet("gemm_bias_forms", (16,))
    x = net.node("Relu", [net.node("Gemm", ["input", net.weight(32, 16)], transB=1)])
    return net.build(net.node("Gemm", [x, net.weight(32, 10), net.const(np.array([0.1], np.float32))]))


CATALOGUE: dict[str, Callable[[], onnx.ModelProto]] = {
    fn.__name__: fn
    for fn in (
        conv_bn_relu,
        residual_chain,
        concat_same_tensor,
        concat_different_sources,
        concat_then_add,
        depthwise_after_producer,
        grouped_conv,
        grouped_conv_two_towers,
        partial_residual,
        shape_of_views,
        shufflenet_v1_unit,
        shufflenet_v2_stream,
        flatten_gemm,
        reshape_gemm,
        squeeze_excitation,
        channel_shuffle,
        split_branches,
        channel_slice,
        gemm_chain,
        matmul_tokens,
        per_channel_constants,
        conv_transpose,
        instance_norm_resize_pad,
        channels_last_layernorm,
        pooled_head,
        aliased_weights,
        unsupported_op,
        computed_chunks,
        computed_view,
        gather_spatial,
        grouped_conv_transpose,
        pad_value_axes,
        spatial_slice,
        squeezed_tokens,
        equal_split,
        gemm_bias_forms,
    )
}


def linear_pair() -> onnx.ModelProto:
    """Two convolutions with nothing between them: the second is linear in the first's channels."""
    net = TinyNet("linear_pair")
    return net.build(net.conv(net.conv("input", 3, 8), 8, 4))


def token_encoder(vocab: int = 50) -> onnx.ModelProto:
    """Token ids (int64) and a boolean mask with a symbolic sequence length: embedding, MLP, masked sum."""
    net = TinyNet("token_encoder")
    table = net.const(net.rng.standard_normal((vocab, 8)).astype(np.float32), "embedding")
    x = net.node("Gather", [table, "input_ids"])
    hidden = net.node("Relu", [net.node("MatMul", [x, net.weight(8, 16)])])
    y = net.node("MatMul", [hidden, net.weight(16, 6)])
    mask = net.node("Unsqueeze", [net.node("Cast", ["mask"], to=TensorProto.FLOAT), net.const(np.array([2]))])
    pooled = net.node("ReduceSum", [net.node("Mul", [y, mask]), net.const(np.array([1]))], keepdims=0)
    graph = helper.make_graph(
        net.nodes,
        net.name,
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info(pooled, TensorProto.FLOAT, ["batch", 6])],
        net.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def attention_heads(heads: int = 4, width: int = 8) -> onnx.ModelProto:
    """Tokens → Q, K, V projections split into heads → scaled dot-product attention → output projection."""
    net = TinyNet("attention_heads", input_shape=(5, 16))
    d = heads * width
    x = net.node("MatMul", ["input", net.weight(16, d)])  # token features, pinned by the input
    split = net.const(np.array([0, 0, heads, width], dtype=np.int64))

    def project() -> str:
        y = net.node("Add", [net.node("MatMul", [x, net.weight(d, d)]), net.const(np.ones(d, np.float32) * 0.1)])
        return net.node("Transpose", [net.node("Reshape", [y, split])], perm=[0, 2, 1, 3])

    q, k, v = project(), project(), project()
    scores = net.node("MatMul", [q, net.node("Transpose", [k], perm=[0, 1, 3, 2])])
    probs = net.node("Softmax", [net.node("Div", [scores, net.const(np.array(2.0, np.float32))])], axis=-1)
    context = net.node("Transpose", [net.node("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    merged = net.node("Reshape", [context, net.const(np.array([0, 0, -1], dtype=np.int64))])
    return net.build(net.node("MatMul", [merged, net.weight(d, 6)]))


def save_with_external_data(model: onnx.ModelProto, path, location: str) -> None:
    """Write ``model`` with every weight in ``location`` beside it, the way other tools write large models."""
    onnx.save(  # noqa: TID251 - a third-party style file, not a project output
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=0,
    )


def half_and_random_plans(analysis, low: float) -> list[PruningPlan]:
    """The two plans the oracle tests prune every model with: each group at 0.5, and seeded random keep
    ratios in [low, 1) for the prunable groups."""
    rng = np.random.default_rng(0)
    return [
        uniform_plan(analysis.groups, 0.5),
        PruningPlan({g.id: float(rng.uniform(low, 1.0)) for g in analysis.prunable_groups}),
    ]
