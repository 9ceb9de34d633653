"""What a channel-flow rule may look at while walking one node."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from agmc_onnx.graph.constants import constant_values
from agmc_onnx.groups.flow import ChannelFlow, ChannelTensor

__all__ = ["RuleContext"]


@dataclass
class RuleContext:
    flow: ChannelFlow
    shapes: Mapping[str, tuple[int, ...]]  # static shapes with the batch analysed as 1
    shapes_alt: Mapping[str, tuple[int, ...]]  # the same with batch 2: tells batch-dependent dims apart

    def info(self, tensor: gs.Tensor) -> ChannelTensor | None:
        if isinstance(tensor, gs.Constant) or not tensor.name:
            return None
        return self.flow.tensors.get(tensor.name)

    def shape(self, tensor: gs.Tensor) -> tuple[int, ...] | None:
        if isinstance(tensor, gs.Constant):
            return tuple(tensor.shape)
        return self.shapes.get(tensor.name)

    def shape_alt(self, tensor: gs.Tensor) -> tuple[int, ...] | None:
        if isinstance(tensor, gs.Constant):
            return tuple(tensor.shape)
        return self.shapes_alt.get(tensor.name, self.shapes.get(tensor.name))

    @staticmethod
    def const(tensor: gs.Tensor | None) -> np.ndarray | None:
        """The values of a constant (read, for small ones: shapes, axes, indices); None otherwise."""
        if isinstance(tensor, gs.Constant):
            return constant_values(tensor)
        return None

    @staticmethod
    def const_shape(tensor: gs.Tensor | None) -> tuple[int, ...] | None:
        """The shape of a constant, from its header (no byte of a weight read); None for a computed tensor."""
        if isinstance(tensor, gs.Constant):
            return tuple(int(d) for d in tensor.shape)
        return None

    def set(self, tensor: gs.Tensor, axis: int, atoms: np.ndarray) -> None:
        self.flow.tensors[tensor.name] = ChannelTensor(axis, atoms)

    def pin_inputs(self, node: gs.Node, reason: str) -> None:
        for tensor in node.inputs:
            if tensor.name:
                self.flow.pin_tensor(tensor.name, reason)

    def fresh_pinned_outputs(self, node: gs.Node, reason: str) -> None:
        """Outputs of a node we do not follow: their channels exist but may never be pruned."""
        for tensor in node.outputs:
            shape = self.shape(tensor)
            carries_values = tensor.dtype is None or np.dtype(tensor.dtype).kind not in "iub"  # not ids or masks
            if shape is not None and len(shape) >= 2 and carries_values:
                self.set(tensor, 1, self.flow.new_atoms(shape[1], reason))

    def barrier(self, node: gs.Node, reason: str | None = None) -> None:
        reason = reason or f"{node.op} '{node.name}' is not followed"
        self.pin_inputs(node, reason)
        self.fresh_pinned_outputs(node, reason)

    def tracked_input(self, node: gs.Node, shape_of: gs.Tensor | None = None):
        """(channels of input 0, shape of ``shape_of`` or input 0), or None to stop the rule.

        None when input 0 carries no channels, or, after pinning them, when the shape is unknown.
        """
        x = self.info(node.inputs[0])
        if x is None:
            return None
        shape = self.shape(shape_of if shape_of is not None else node.inputs[0])
        if shape is None:
            self.barrier(node, f"{node.op} '{node.name}' has a tensor of unknown shape")
            return None
        return x, shape

    def attr(self, node: gs.Node, name: str, default=None):
        return node.attrs.get(name, default)
