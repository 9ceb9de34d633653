"""What a prunable operator's latency depends on, apart from its channel counts: its table key.

Two layers with equal signatures (same operator, kernel, strides, input spatial size, batch…) share one
latency table, whatever model they come from; the table's axes are the kept input and output channels
(for grouped convolutions: the kept number of conv groups, with channels per group fixed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from agmc_onnx.analysis import ModelAnalysis
from agmc_onnx.groups.macs_model import MacsModel

__all__ = ["LayerSignature", "LayerSlot", "layer_slots", "TABULATED_OPS"]

TABULATED_OPS = frozenset({"Conv", "Gemm", "MatMul"})


@dataclass(frozen=True)
class LayerSignature:
    op_type: str
    input_shape: tuple[int, ...]  # batch 1, the channel axis set to -1
    channel_axis: int
    kernel: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()
    dilations: tuple[int, ...] = ()
    per_group: tuple[int, int] | None = None  # (in, out) channels per conv group; None for dense layers

    @property
    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def describe(self) -> str:
        spatial = "×".join(str(d) for d in self.input_shape[2:]) if self.op_type == "Conv" else ""
        kernel = "×".join(str(k) for k in self.kernel)
        kind = "" if self.per_group is None else f" grouped {self.per_group[0]}:{self.per_group[1]}"
        stride = f" s{self.strides[0]}" if self.strides and self.strides[0] != 1 else ""
        return f"{self.op_type} {kernel}{stride}{kind} @{spatial}".strip(" @")


@dataclass(frozen=True)
class LayerSlot:
    """One tabulated layer of a model: its signature, full widths, and how group keeps set its widths."""

    name: str
    signature: LayerSignature
    row: int  # the layer's row in the MacsModel
    in_channels: int
    out_channels: int
    groups: int

    def counts(self, shares: tuple[np.ndarray, np.ndarray]) -> tuple[int, int]:
        """(kept in, kept out) table coordinates; for grouped layers (kept groups, kept groups).

        ``shares``: every layer's kept input and output fractions (``MacsModel.kept_shares``)."""
        in_kept, out_kept = shares[0][self.row], shares[1][self.row]
        if self.signature.per_group is not None:
            kept_groups = max(1, int(round(self.groups * out_kept)))
            return kept_groups, kept_groups
        return max(1, int(round(self.in_channels * in_kept))), max(1, int(round(self.out_channels * out_kept)))

    def deleted(self, shares: tuple[np.ndarray, np.ndarray]) -> bool:
        """Whether removed groups (keep 0, a deleted branch) leave the layer no input or no output channel."""
        in_kept, out_kept = shares[0][self.row], shares[1][self.row]
        return bool(out_kept <= 1e-9 or (self.signature.per_group is None and in_kept <= 1e-9))


def layer_slots(analysis: ModelAnalysis, macs: MacsModel) -> tuple[tuple[LayerSlot, ...], tuple[str, ...]]:
    """Tabulated layers of the model, and the names of weighted layers the table cannot cover."""
    node_inputs = {node.name: node.input[0] for node in analysis.model.graph.node if node.input}
    slots, untabulated = [], []
    for row, name in enumerate(macs.layer_names):
        layer = analysis.layers[name]
        shape = analysis.shapes.get(node_inputs.get(name, ""))
        if layer.op_type not in TABULATED_OPS or shape is None or not _tabulatable(layer, shape):
            untabulated.append(name)
            continue
        axis = 1 if layer.op_type in ("Conv", "Gemm") else len(shape) - 1
        per_group = None
        if layer.op_type == "Conv" and layer.groups > 1:
            per_group = (layer.in_channels // layer.groups, layer.out_channels // layer.groups)
        input_shape = tuple(-1 if i == axis else int(d) for i, d in enumerate(shape))
        signature = LayerSignature(
            op_type=layer.op_type,
            input_shape=input_shape,
            channel_axis=axis,
            kernel=layer.kernel,
            strides=layer.stride,
            pads=layer.pads,
            dilations=layer.dilations,
            per_group=per_group,
        )
        slots.append(LayerSlot(name, signature, row, layer.in_channels, layer.out_channels, layer.groups))
    return tuple(slots), tuple(untabulated)


def _tabulatable(layer, shape: tuple[int, ...]) -> bool:
    if layer.op_type == "Gemm":
        return len(shape) == 2 and layer.attrs.get("transA", 0) == 0
    if layer.op_type == "MatMul":
        return len(shape) >= 2
    return len(shape) >= 3
