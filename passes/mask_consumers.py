"""MaskConsumersPass: the oracle's reference, the model with removed channels' consumer weights zeroed.

It runs on the user's model as loaded (only node names added), not on the constant-folded copy that
analysis and pruning work on, so that a folding bug cannot hide in the reference. A consumer whose
weight is a constant gets a zeroed copy of its own; one whose weight is computed in the file (an
``Identity`` alias, a weight-norm subgraph) gets a ``Mul`` by a 0/1 mask in front of it. Multiplying by
one is exact in floating point, so nothing but the removed channels changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from agmc_onnx.errors import PostconditionError, PreconditionError
from agmc_onnx.groups.flow import Edit, SliceConstant
from agmc_onnx.passes.base import GraphPass, PassResult

__all__ = ["ConsumerMask", "MaskConsumersPass", "consumer_masks"]


@dataclass(frozen=True)
class ConsumerMask:
    """Zero input ``input_index`` of ``node`` at the ``dropped`` positions of ``axis`` (weight rank ``rank``)."""

    node: str
    input_index: int
    axis: int
    rank: int
    length: int
    dropped: tuple[int, ...]
    groups: int = 1  # a grouped Conv's input: ``axis`` indexes positions within ``groups`` equal groups
    rows: int = 1  # the weight's length along axis 0 (its output channels), for ``groups`` > 1

    @property
    def axis_length(self) -> int:
        """The weight's length along ``axis``."""
        return self.length // self.groups

    def mask(self, dtype: np.dtype) -> np.ndarray:
        """A 0/1 array that broadcasts against the weight along ``axis`` only (and axis 0 when grouped)."""
        shape = [1] * self.rank
        shape[self.axis] = self.axis_length
        if self.groups == 1:
            values = np.ones(self.length, dtype=dtype)
            values[list(self.dropped)] = 0
            return values.reshape(shape)
        values = np.ones((self.groups, self.rows // self.groups, self.axis_length), dtype=dtype)
        for position in self.dropped:
            group, index = divmod(position, self.axis_length)
            values[group, :, index] = 0
        shape[0] = self.rows
        return values.reshape(shape)


def consumer_masks(
    edits: Sequence[Edit],
    kept: Mapping[str, np.ndarray],
    lengths: Mapping[str, int],
    weight_shapes: Mapping[tuple[str, int], tuple[int, ...]],
) -> tuple[ConsumerMask, ...]:
    """One mask per consumer-side slice edit whose tensor loses positions.

    ``weight_shapes`` maps (node, input index) to the shape of that input in the analysed model.
    """
    masks = []
    for edit in edits:
        if not (isinstance(edit, SliceConstant) and edit.consumes and edit.tensor in kept):
            continue
        length = lengths[edit.tensor]
        dropped = np.setdiff1d(np.arange(length), kept[edit.tensor])
        shape = weight_shapes[(edit.node, edit.input_index)]
        masks.append(
            ConsumerMask(
                edit.node, edit.input_index, edit.axis, len(shape), length, tuple(dropped.tolist()), edit.groups, shape[0]
            )
        )
    return tuple(masks)


class MaskConsumersPass(GraphPass):
    """Zeroes the removed channels' weights in every consumer.

    Requires: every masked node exists with the masked input, and a constant input has the mask's
    length along its axis. Ensures: every masked input reads exactly zero at the removed positions
    (constants), or is the product of the original input with the mask (computed weights).
    """

    def __init__(self, masks: Sequence[ConsumerMask]) -> None:
        self.masks = tuple(masks)

    def requires(self, graph: gs.Graph) -> None:
        nodes = {node.name: node for node in graph.nodes}
        for mask in self.masks:
            node = nodes.get(mask.node)
            if node is None or mask.input_index >= len(node.inputs):
                raise PreconditionError(
                    f"MaskConsumersPass: node '{mask.node}' with input {mask.input_index} is not in the graph"
                )
            weight = node.inputs[mask.input_index]
            if isinstance(weight, gs.Constant) and weight.values.shape[mask.axis] != mask.axis_length:
                raise PreconditionError(
                    f"MaskConsumersPass: input {mask.input_index} of '{mask.node}' has "
                    f"{weight.values.shape[mask.axis]} positions on axis {mask.axis}, expected {mask.axis_length}"
                )

    def call(self, graph: gs.Graph) -> PassResult:
        nodes = {node.name: node for node in graph.nodes}
        n_constants = n_computed = 0
        for index, mask in enumerate(self.masks):
            node = nodes[mask.node]
            weight = node.inputs[mask.input_index]
            if isinstance(weight, gs.Constant):
                values = np.asarray(weight.values)
                masked = np.where(mask.mask(values.dtype) != 0, values, np.zeros((), values.dtype))
                node.inputs[mask.input_index] = gs.Constant(f"{weight.name}__masked_{index}", masked)
                n_constants += 1
            else:
                dtype = np.dtype(weight.dtype) if weight.dtype is not None else np.dtype(np.float32)
                factor = gs.Constant(f"{mask.node}__mask_{index}", mask.mask(dtype))
                product = gs.Variable(f"{weight.name}__masked_{index}", dtype=weight.dtype, shape=weight.shape)
                graph.nodes.append(gs.Node("Mul", f"{mask.node}__masking_{index}", inputs=[weight, factor], outputs=[product]))
                node.inputs[mask.input_index] = product
                n_computed += 1
        graph.toposort()
        stats = {"masked_constants": n_constants, "masked_computed_weights": n_computed}
        return PassResult(graph, bool(self.masks), stats)

    def ensures(self, graph: gs.Graph) -> None:
        nodes = {node.name: node for node in graph.nodes}
        for mask in self.masks:
            weight = nodes[mask.node].inputs[mask.input_index]
            if isinstance(weight, gs.Constant):
                values = np.asarray(weight.values)
                if np.any(np.where(mask.mask(values.dtype) == 0, values, np.zeros((), values.dtype)) != 0):
                    raise PostconditionError(f"MaskConsumersPass: '{mask.node}' still reads a removed channel")
            elif not (weight.inputs and weight.inputs[0].op == "Mul"):
                raise PostconditionError(f"MaskConsumersPass: input of '{mask.node}' is not masked")
