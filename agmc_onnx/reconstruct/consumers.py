"""Which layers a channel selection leaves to re-fit, and how each one reads its input.

A *consumer* is a Conv, Gemm or MatMul with constant weights whose input loses channels. Re-fitting it
means: on sampled output positions, its pruned input (kept channels only) must reproduce the original
layer's output (kept output channels only). ``LayerGeometry`` turns a layer's input into the rows of that
least-squares problem.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper

from agmc_onnx.analysis import ModelAnalysis
from agmc_onnx.groups.flow import SliceConstant
from agmc_onnx.plan import ChannelSelection

__all__ = ["Consumer", "ResidualSum", "LayerGeometry", "find_consumers", "layer_geometry", "with_outputs"]


@dataclass(frozen=True)
class ResidualSum:
    """A layer whose output (through an optional BatchNormalization) is added to a shortcut.

    Re-fitting it toward the original *sum* minus the pruned model's shortcut, instead of toward its own
    original output, lets it absorb the error the shortcut carries (He et al., 2017, section 3.3)."""

    add_output: str  # the Add's output in the original
    shortcut: str  # the Add's other input
    batchnorm: tuple[str, str, str, str] | None  # scale, bias, mean, var of the BN between layer and Add
    epsilon: float = 1e-5


@dataclass(frozen=True)
class Consumer:
    """One layer to re-fit: its node, the original tensors it reads and writes, and the kept output
    positions (``None``: all of them)."""

    node: str
    op_type: str
    input: str
    output: str
    keep_out: tuple[int, ...] | None
    input_shape: tuple[int, ...]  # original shapes at batch 1
    output_shape: tuple[int, ...]
    residual: ResidualSum | None = None


@dataclass(frozen=True)
class LayerGeometry:
    """How rows of the least-squares problem are cut out of a layer's input.

    Conv: one row per sampled output position (a receptive-field patch, channel-major like the weight);
    Gemm/MatMul: one row per sampled input row (every leading position of a token tensor counts).
    """

    op_type: str
    kernel: tuple[int, int] = (1, 1)
    strides: tuple[int, int] = (1, 1)
    dilations: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    groups: int = 1
    weight_transposed: bool = False  # Gemm transB=0 and MatMul store the weight as [in, out]
    alpha: float = 1.0
    beta: float = 1.0

    def positions(self, output_shape: tuple[int, ...]) -> int:
        """Sampleable positions per image."""
        return int(math.prod(output_shape[2:])) if self.op_type == "Conv" else int(math.prod(output_shape[1:-1]))

    def rows(self, x: torch.Tensor, images: torch.Tensor, places: torch.Tensor) -> torch.Tensor:
        """Rows ``[M, C_in · kh · kw]`` for output positions ``places`` (flat) of images ``images``."""
        if self.op_type != "Conv":
            flat = x.reshape(x.shape[0], -1, x.shape[-1])
            return flat[images, places]
        top, left, bottom, right = self.pads
        padded = F.pad(x, (left, right, top, bottom))
        out_w = (x.shape[3] + left + right - self.dilations[1] * (self.kernel[1] - 1) - 1) // self.strides[1] + 1
        oh, ow = places // out_w, places % out_w
        taps = []
        for i in range(self.kernel[0]):
            for j in range(self.kernel[1]):
                ih = oh * self.strides[0] + i * self.dilations[0]
                iw = ow * self.strides[1] + j * self.dilations[1]
                taps.append(padded[images, :, ih, iw])  # [M, C]
        return torch.stack(taps, dim=2).reshape(len(images), -1)  # [M, C, kh·kw] -> channel-major


def layer_geometry(op_type: str, attrs: Mapping, input_shape: tuple[int, ...]) -> LayerGeometry | None:
    """The geometry of a supported layer (attributes as a name -> value mapping), or ``None``."""
    if op_type == "Conv":
        kernel = tuple(attrs.get("kernel_shape", ()))
        if len(kernel) != 2 or len(input_shape) != 4:
            return None
        strides = tuple(attrs.get("strides", (1, 1)))
        dilations = tuple(attrs.get("dilations", (1, 1)))
        pads = _conv_pads(attrs, input_shape[2:], kernel, strides, dilations)
        if pads is None:
            return None
        return LayerGeometry("Conv", kernel, strides, dilations, pads, int(attrs.get("group", 1)))
    if op_type == "Gemm":
        if attrs.get("transA", 0):
            return None
        return LayerGeometry(
            "Gemm",
            weight_transposed=not attrs.get("transB", 0),
            alpha=float(attrs.get("alpha", 1.0)),
            beta=float(attrs.get("beta", 1.0)),
        )
    if op_type == "MatMul" and len(input_shape) >= 2:
        return LayerGeometry("MatMul", weight_transposed=True)
    return None


def _conv_pads(attrs, spatial, kernel, strides, dilations) -> tuple[int, int, int, int] | None:
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    if auto_pad in ("NOTSET", "VALID"):
        pads = tuple(attrs.get("pads", (0, 0, 0, 0))) if auto_pad == "NOTSET" else (0, 0, 0, 0)
        return (pads[0], pads[1], pads[2], pads[3]) if len(pads) == 4 else None
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER") or any(not isinstance(s, int) for s in spatial):
        return None
    totals = []
    for size, k, s, d in zip(spatial, kernel, strides, dilations):
        out = -(-size // s)
        totals.append(max(0, (out - 1) * s + (k - 1) * d + 1 - size))
    small = [t // 2 for t in totals]
    large = [t - t // 2 for t in totals]
    begin, end = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
    return (begin[0], begin[1], end[0], end[1])


def find_consumers(
    analysis: ModelAnalysis, selection: ChannelSelection, downstream: bool = False
) -> tuple[Consumer, ...]:
    """Layers whose input loses channels under ``selection``, and convolutions whose output feeds a residual
    Add that does, in topological order; with ``downstream``, every weighted layer after the first of
    those (so later layers can absorb earlier errors)."""
    kept = analysis.kept_positions(selection.dropped_roots(analysis.groups))
    nodes = {node.name: node for node in analysis.model.graph.node}
    names: set[str] = set()
    for edit in analysis.flow.edits:
        if isinstance(edit, SliceConstant) and edit.consumes and edit.is_weight and edit.tensor in kept:
            node = nodes[edit.node]
            if node.op_type in ("Conv", "Gemm", "MatMul") and node.input[0] == edit.tensor:
                names.add(node.name)
    readers = _readers_of(analysis.model)
    constants = {init.name for init in analysis.model.graph.initializer}
    names.update(  # a layer whose output channels go into a pruned residual sum can absorb the shortcut's error
        node.name
        for node in analysis.model.graph.node
        if node.op_type == "Conv" and node.output[0] in kept and len(node.input) > 1 and node.input[1] in constants
        and node.name in analysis.layers and _residual_sum(analysis.model, node, readers) is not None
    )
    if downstream and names:
        first = min(analysis.layers[n].topo_index for n in names)
        names.update(
            node.name
            for node in analysis.model.graph.node
            if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1 and node.input[1] in constants
            and node.name in analysis.layers and analysis.layers[node.name].topo_index > first
        )
    found = [_consumer(analysis, nodes[name], kept, readers) for name in names]
    return tuple(sorted(found, key=lambda c: analysis.layers[c.node].topo_index))


def _consumer(analysis: ModelAnalysis, node: onnx.NodeProto, kept, readers) -> Consumer:
    keep_out = kept.get(node.output[0])
    return Consumer(
        node.name,
        node.op_type,
        node.input[0],
        node.output[0],
        None if keep_out is None else tuple(int(i) for i in keep_out),
        tuple(analysis.shapes.get(node.input[0], ())),
        tuple(analysis.shapes.get(node.output[0], ())),
        _residual_sum(analysis.model, node, readers) if node.op_type == "Conv" else None,
    )


def _readers_of(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def _residual_sum(model: onnx.ModelProto, node: onnx.NodeProto, readers) -> ResidualSum | None:
    """The Add this layer's output reaches directly or through one BatchNormalization, if any."""
    outputs = {o.name for o in model.graph.output}
    tensor, batchnorm, epsilon = node.output[0], None, 1e-5
    after = readers.get(tensor, [])
    if len(after) == 1 and after[0].op_type == "BatchNormalization" and tensor not in outputs:
        bn = after[0]
        batchnorm = (bn.input[1], bn.input[2], bn.input[3], bn.input[4])
        epsilon = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        tensor = bn.output[0]
        after = readers.get(tensor, [])
    if len(after) != 1 or after[0].op_type != "Add" or tensor in outputs or len(after[0].input) != 2:
        return None
    add = after[0]
    shortcut = add.input[1] if add.input[0] == tensor else add.input[0]
    return ResidualSum(add.output[0], shortcut, batchnorm, float(epsilon))


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph outputs are the (intermediate, float) tensors ``names``."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in names)
    return probe
