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

__all__ = ["Consumer", "LayerGeometry", "find_consumers", "layer_geometry", "with_outputs"]


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


def find_consumers(analysis: ModelAnalysis, selection: ChannelSelection) -> tuple[Consumer, ...]:
    """Layers whose input loses channels under ``selection``, in topological order."""
    kept = analysis.kept_positions(selection.dropped_roots(analysis.groups))
    nodes = {node.name: node for node in analysis.model.graph.node}
    found: dict[str, Consumer] = {}
    for edit in analysis.flow.edits:
        if not (isinstance(edit, SliceConstant) and edit.consumes and edit.is_weight and edit.tensor in kept):
            continue
        node = nodes[edit.node]
        if node.op_type not in ("Conv", "Gemm", "MatMul") or node.input[0] != edit.tensor:
            continue
        keep_out = kept.get(node.output[0])
        found[node.name] = Consumer(
            node.name,
            node.op_type,
            edit.tensor,
            node.output[0],
            None if keep_out is None else tuple(int(i) for i in keep_out),
            tuple(analysis.shapes.get(edit.tensor, ())),
            tuple(analysis.shapes.get(node.output[0], ())),
        )
    return tuple(sorted(found.values(), key=lambda c: analysis.layers[c.node].topo_index))


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph outputs are the (intermediate, float) tensors ``names``."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in names)
    return probe
