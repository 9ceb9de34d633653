"""PruneChannelsPass: physically remove channels, rewriting every constant and attribute they touch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx_graphsurgeon as gs

from agmc_onnx.errors import PostconditionError, PreconditionError
from agmc_onnx.graph.constants import constant_values
from agmc_onnx.groups.flow import Edit, RewriteAttribute, SliceConstant
from agmc_onnx.passes.base import GraphPass, PassResult

__all__ = ["PruneChannelsPass"]


class PruneChannelsPass(GraphPass):
    """Applies channel edits for the positions that stay in each tensor.

    Requires: every edited node exists and every sliced input is a constant.
    Ensures: every sliced constant has exactly the kept length along its axis, conv group counts
    divide their channel counts, and no tensor lost all of its channels.
    """

    def __init__(
        self, edits: Sequence[Edit], kept: Mapping[str, np.ndarray], lengths: Mapping[str, int]
    ) -> None:
        self.edits = tuple(edits)
        self.kept = dict(kept)
        self.lengths = dict(lengths)  # original channel length of each tensor in ``kept`` and each edit names

    def _active(self) -> list[Edit]:
        return [e for e in self.edits if any(t in self.kept for t in _edit_tensors(e))]

    def requires(self, graph: gs.Graph) -> None:
        nodes = {node.name: node for node in graph.nodes}
        for edit in self._active():
            node = nodes.get(edit.node)
            if node is None:
                raise PreconditionError(f"PruneChannelsPass: node '{edit.node}' is not in the graph")
            if isinstance(edit, SliceConstant) and not isinstance(node.inputs[edit.input_index], gs.Constant):
                raise PreconditionError(
                    f"PruneChannelsPass: input {edit.input_index} of '{edit.node}' is not a constant"
                )
        for name, positions in self.kept.items():
            if len(positions) == 0:
                raise PreconditionError(f"PruneChannelsPass: tensor '{name}' would keep no channels")

    def call(self, graph: gs.Graph) -> PassResult:
        nodes = {node.name: node for node in graph.nodes}
        n_sliced = n_rewritten = 0
        for edit in self._active():
            node = nodes[edit.node]
            if isinstance(edit, SliceConstant):
                values = constant_values(node.inputs[edit.input_index])
                if edit.groups > 1:
                    values = _take_inside_groups(node, values, edit, self.kept[edit.tensor], self.lengths[edit.tensor])
                else:
                    values = np.take(values, self.kept[edit.tensor], axis=edit.axis)
                _replace_constant(node, edit.input_index, values)
                n_sliced += 1
            else:
                _REWRITERS[edit.kind](node, edit, self, graph.opset)
                n_rewritten += 1
        for tensor in graph.tensors().values():
            if isinstance(tensor, gs.Variable) and tensor not in graph.inputs and tensor not in graph.outputs:
                tensor.shape = None  # stale after pruning; shape inference recomputes them
        removed = sum(self.lengths[name] - len(pos) for name, pos in self.kept.items())
        stats = {
            "sliced_constants": n_sliced,
            "rewritten_attributes": n_rewritten,
            "removed_positions": removed,
        }
        return PassResult(graph, bool(n_sliced or n_rewritten), stats)

    def ensures(self, graph: gs.Graph) -> None:
        nodes = {node.name: node for node in graph.nodes}
        for edit in self._active():
            node = nodes[edit.node]
            if isinstance(edit, SliceConstant):
                length = node.inputs[edit.input_index].shape[edit.axis]
                expected = len(self.kept[edit.tensor]) // edit.groups
                if length != expected:
                    raise PostconditionError(
                        f"{node.op} '{node.name}': input {edit.input_index} has {length} channels on axis "
                        f"{edit.axis}, expected {expected}"
                    )
            elif edit.kind == "conv_group":
                weight = node.inputs[1]
                group = int(node.attrs.get("group", 1))
                n_out = weight.shape[0] if node.op == "Conv" else weight.shape[1] * group
                if group < 1 or n_out % group:
                    raise PostconditionError(
                        f"{node.op} '{node.name}': group {group} does not divide {n_out} channels"
                    )


def _edit_tensors(edit: Edit) -> tuple[str, ...]:
    return (edit.tensor,) if isinstance(edit, SliceConstant) else edit.tensors


def _replace_constant(node: gs.Node, index: int, values: np.ndarray) -> None:
    """Give this input its own constant: another node may share the original one."""
    old = node.inputs[index]
    shared = len(old.outputs) > 1
    name = f"{old.name}__{node.name}" if shared else old.name
    node.inputs[index] = gs.Constant(name, np.ascontiguousarray(values))


def _take_inside_groups(
    node: gs.Node, values: np.ndarray, edit: SliceConstant, kept: np.ndarray, length: int
) -> np.ndarray:
    """A grouped Conv's weight: the rows of each conv group keep the in-group inputs that group keeps."""
    k = length // edit.groups
    rows = np.split(values, edit.groups, axis=0)
    parts = []
    for group, block in enumerate(rows):
        local = kept[(kept >= group * k) & (kept < (group + 1) * k)] - group * k
        parts.append(np.take(block, local, axis=edit.axis))
    if len({part.shape[edit.axis] for part in parts}) != 1:
        raise PreconditionError(f"{node.op} '{node.name}': its groups would keep unequal numbers of input channels")
    return np.concatenate(parts, axis=0)


def _kept_count(edit_pass: PruneChannelsPass, tensor: str) -> int:
    if tensor in edit_pass.kept:
        return len(edit_pass.kept[tensor])
    return edit_pass.lengths[tensor]


def _rewrite_conv_group(
    node: gs.Node, edit: RewriteAttribute, edit_pass: PruneChannelsPass, opset: int
) -> None:
    groups, n_out = edit.detail
    kept_out = _kept_count(edit_pass, edit.tensors[0])
    node.attrs["group"] = int(groups * kept_out // n_out)


def _rewrite_split(node: gs.Node, edit: RewriteAttribute, edit_pass: PruneChannelsPass, opset: int) -> None:
    sizes = np.array([_kept_count(edit_pass, t) for t in edit.tensors], dtype=np.int64)
    if (sizes == 0).any():
        raise PreconditionError(f"Split '{node.name}': an output would keep no channels")
    node.attrs.pop("num_outputs", None)
    if len(node.inputs) > 1 and node.inputs[1].name:
        _replace_constant(node, 1, sizes)
    elif opset >= 13:  # from opset 13 the sizes are an input
        node.attrs.pop("split", None)
        node.inputs.append(gs.Constant(f"{node.name}__split", sizes))
    else:
        node.attrs["split"] = sizes.tolist()


def _rewrite_slice(node: gs.Node, edit: RewriteAttribute, edit_pass: PruneChannelsPass, opset: int) -> None:
    position, start, stop = edit.detail
    kept = edit_pass.kept[edit.tensors[0]]
    new_start, new_stop = int(np.sum(kept < start)), int(np.sum(kept < stop))
    for index, value in ((1, new_start), (2, new_stop)):
        values = np.array(node.inputs[index].values, copy=True)
        values.ravel()[position] = value
        _replace_constant(node, index, values)


def _rewrite_reshape(node: gs.Node, edit: RewriteAttribute, edit_pass: PruneChannelsPass, opset: int) -> None:
    input_index, offset = edit.detail
    values = np.array(node.inputs[input_index].values, copy=True)
    values.ravel()[offset] = _kept_count(edit_pass, edit.tensors[0])
    _replace_constant(node, input_index, values)


def _rewrite_reshape_piece(
    node: gs.Node, edit: RewriteAttribute, edit_pass: PruneChannelsPass, opset: int
) -> None:
    """A one-element piece of a Concat-built target shape, computed at run time, becomes the kept count."""
    (input_index,) = edit.detail
    count = np.array([_kept_count(edit_pass, edit.tensors[0])], dtype=np.int64)
    node.inputs[input_index] = gs.Constant(f"{node.name}__piece{input_index}", count)


def _rewrite_slice_computed(
    node: gs.Node, edit: RewriteAttribute, edit_pass: PruneChannelsPass, opset: int
) -> None:
    """One-axis bounds computed at run time from static shapes become constants of the kept positions."""
    _, start, stop = edit.detail
    kept = edit_pass.kept[edit.tensors[0]]
    node.inputs[1] = gs.Constant(f"{node.name}__starts", np.array([np.sum(kept < start)], dtype=np.int64))
    node.inputs[2] = gs.Constant(f"{node.name}__ends", np.array([np.sum(kept < stop)], dtype=np.int64))


_REWRITERS = {
    "conv_group": _rewrite_conv_group,
    "split": _rewrite_split,
    "slice": _rewrite_slice,
    "reshape": _rewrite_reshape,
    "reshape_piece": _rewrite_reshape_piece,
    "slice_computed": _rewrite_slice_computed,
}
