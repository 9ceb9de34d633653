"""Channel-flow rules of producers, normalisation, activations and element-wise arithmetic."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import onnx_graphsurgeon as gs

from agmc_onnx.groups import rules_grouped as grouped
from agmc_onnx.groups.context import RuleContext
from agmc_onnx.groups.flow import ChannelTensor, RewriteAttribute, SliceConstant

__all__ = [
    "conv_rule",
    "conv_transpose_rule",
    "gemm_rule",
    "matmul_rule",
    "passthrough_rule",
    "normalization_rule",
    "layer_norm_rule",
    "axis_mixing_rule",
    "elementwise_rule",
    "channelwise_rule",
]


class _Conv(NamedTuple):
    weight: tuple[int, ...]  # the weight's shape
    x: ChannelTensor | None  # the input's channels (None: untracked)
    x_name: str
    y_name: str
    groups: int
    y_atoms: np.ndarray


def _conv_producer(node: gs.Node, ctx: RuleContext, out_axis: int) -> _Conv | None:
    """What Conv and ConvTranspose share: a constant weight on a channels-first input, whose axis
    ``out_axis`` (times the group count for ConvTranspose) gives fresh output atoms; None after declaring
    a barrier."""
    weight = ctx.const_shape(node.inputs[1])
    x = ctx.info(node.inputs[0])
    if weight is None or (x is not None and x.axis != 1):
        ctx.barrier(node, f"{node.op} '{node.name}' has a non-constant weight or an unusual layout")
        return None
    groups = int(ctx.attr(node, "group", 1))
    y_atoms = ctx.flow.new_atoms(int(weight[out_axis]) * (groups if out_axis == 1 else 1))
    ctx.set(node.outputs[0], 1, y_atoms)
    ctx.flow.producers[node.name] = node.outputs[0].name
    return _Conv(weight, x, node.inputs[0].name, node.outputs[0].name, groups, y_atoms)


def conv_rule(node: gs.Node, ctx: RuleContext) -> None:
    conv = _conv_producer(node, ctx, out_axis=0)
    if conv is None:
        return
    edits = ctx.flow.edits
    edits.append(SliceConstant(node.name, 1, 0, conv.y_name, is_weight=True))
    if len(node.inputs) > 2 and node.inputs[2].name:
        edits.append(SliceConstant(node.name, 2, 0, conv.y_name))
    if conv.groups == 1:
        if conv.x is not None:
            edits.append(SliceConstant(node.name, 1, 1, conv.x_name, is_weight=True, consumes=True))
        return
    if conv.x is None or len(conv.x) != int(conv.weight[1]) * conv.groups:
        ctx.flow.pin(conv.y_atoms, f"grouped Conv '{node.name}' reads an untracked input")
        return
    if grouped.prunes_inside_groups(len(conv.x), conv.groups):
        grouped.tie_inside_groups(ctx, node.name, conv.x.atoms, conv.y_atoms, conv.groups)
        edits.append(SliceConstant(node.name, 1, 1, conv.x_name, is_weight=True, consumes=True, groups=conv.groups))
        return
    _tie_whole_groups(ctx, conv.x.atoms, conv.y_atoms, conv.groups)
    edits.append(RewriteAttribute(node.name, "conv_group", (conv.y_name,), (conv.groups, len(conv.y_atoms))))


def _tie_whole_groups(ctx: RuleContext, x_atoms: np.ndarray, y_atoms: np.ndarray, groups: int) -> None:
    """A grouped conv keeps or drops whole groups: each group's inputs and outputs become one unit."""
    k_in, k_out = len(x_atoms) // groups, len(y_atoms) // groups
    for g in range(groups):
        ctx.flow.tie_all(np.concatenate([x_atoms[g * k_in : (g + 1) * k_in], y_atoms[g * k_out : (g + 1) * k_out]]))


def conv_transpose_rule(node: gs.Node, ctx: RuleContext) -> None:
    conv = _conv_producer(node, ctx, out_axis=1)
    if conv is None:
        return
    edits = ctx.flow.edits
    if len(node.inputs) > 2 and node.inputs[2].name:
        edits.append(SliceConstant(node.name, 2, 0, conv.y_name))
    if conv.groups == 1:
        edits.append(SliceConstant(node.name, 1, 1, conv.y_name, is_weight=True))
        if conv.x is not None:
            edits.append(SliceConstant(node.name, 1, 0, conv.x_name, is_weight=True, consumes=True))
        return
    if conv.x is None or len(conv.x) != int(conv.weight[0]):
        ctx.flow.pin(conv.y_atoms, f"grouped ConvTranspose '{node.name}' reads an untracked input")
        return
    _tie_whole_groups(ctx, conv.x.atoms, conv.y_atoms, conv.groups)
    edits.append(SliceConstant(node.name, 1, 0, conv.x_name, is_weight=True))
    edits.append(RewriteAttribute(node.name, "conv_group", (conv.y_name,), (conv.groups, len(conv.y_atoms))))


def gemm_rule(node: gs.Node, ctx: RuleContext) -> None:
    a_tensor, y_tensor = node.inputs[0], node.outputs[0]
    weight = ctx.const_shape(node.inputs[1])
    x = ctx.info(a_tensor)
    if weight is None or int(ctx.attr(node, "transA", 0)) or (x is not None and x.axis != 1):
        ctx.barrier(node, f"Gemm '{node.name}' has a non-constant or transposed operand")
        return
    trans_b = int(ctx.attr(node, "transB", 0))
    n_out = int(weight[0] if trans_b else weight[1])
    bias_tensor = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2].name else None
    if bias_tensor is not None and ctx.const_shape(bias_tensor) is None:
        ctx.barrier(node, f"Gemm '{node.name}' has a computed bias")
        return
    y_atoms = ctx.flow.new_atoms(n_out)
    ctx.set(y_tensor, 1, y_atoms)
    ctx.flow.producers[node.name] = y_tensor.name
    edits = ctx.flow.edits
    edits.append(SliceConstant(node.name, 1, 0 if trans_b else 1, y_tensor.name, is_weight=True))
    if x is not None:
        edits.append(SliceConstant(node.name, 1, 1 if trans_b else 0, a_tensor.name, is_weight=True, consumes=True))
    bias = ctx.const_shape(bias_tensor) if bias_tensor is not None else None
    if bias is not None and len(bias) >= 1 and bias[-1] == n_out and n_out > 1:
        edits.append(SliceConstant(node.name, 2, len(bias) - 1, y_tensor.name))


def matmul_rule(node: gs.Node, ctx: RuleContext) -> None:
    a_tensor, y_tensor = node.inputs[0], node.outputs[0]
    weight = ctx.const_shape(node.inputs[1])
    a_shape, y_shape = ctx.shape(a_tensor), ctx.shape(y_tensor)
    computed_weight = weight is None or len(weight) != 2 or ctx.const_shape(a_tensor) is not None
    if computed_weight or a_shape is None or y_shape is None:
        ctx.barrier(node, f"MatMul '{node.name}' multiplies two computed tensors")
        return
    x = ctx.info(a_tensor)
    if x is not None and x.axis != len(a_shape) - 1:
        # A tensor tracks one channel axis: the new output features win, the passing-through axis is pinned.
        ctx.flow.pin(x.atoms, f"MatMul '{node.name}' contracts another axis than the channels")
        x = None
    y_atoms = ctx.flow.new_atoms(int(weight[1]))
    ctx.set(y_tensor, len(y_shape) - 1, y_atoms)
    ctx.flow.producers[node.name] = y_tensor.name
    ctx.flow.edits.append(SliceConstant(node.name, 1, 1, y_tensor.name, is_weight=True))
    if x is not None:
        ctx.flow.edits.append(SliceConstant(node.name, 1, 0, a_tensor.name, is_weight=True, consumes=True))


def passthrough_rule(node: gs.Node, ctx: RuleContext) -> None:
    """Same shape in and out, each channel computed from itself alone (activations, Identity, Cast...)."""
    x = ctx.info(node.inputs[0])
    if x is None:
        return
    if ctx.shape(node.outputs[0]) != ctx.shape(node.inputs[0]):
        ctx.barrier(node, f"{node.op} '{node.name}' changes the shape")
        return
    ctx.set(node.outputs[0], x.axis, x.atoms)
    for extra in node.inputs[1:]:
        if extra.name and ctx.info(extra) is not None:
            ctx.barrier(node, f"{node.op} '{node.name}' reads a second channel-carrying input")
            return


def normalization_rule(node: gs.Node, ctx: RuleContext) -> None:
    """BatchNormalization / InstanceNormalization: per-channel parameters along axis 1."""
    x = ctx.info(node.inputs[0])
    if x is None:
        return
    params = node.inputs[1:5] if node.op == "BatchNormalization" else node.inputs[1:3]
    if x.axis != 1 or any(ctx.const_shape(p) is None for p in params):
        ctx.barrier(node, f"{node.op} '{node.name}' has computed parameters or a moved channel axis")
        return
    ctx.set(node.outputs[0], 1, x.atoms)
    for index in range(1, 1 + len(params)):
        ctx.flow.edits.append(SliceConstant(node.name, index, 0, node.inputs[0].name))


def _pinned_by_axis(mixes: Callable[[int, int], bool], reason: str) -> Callable[[gs.Node, RuleContext], None]:
    """A rule for an op with an ``axis`` attribute that passes channels through unless it mixes values
    across them: ``mixes(channel axis, op axis)`` pins them with ``reason`` ("{op} '{name}' ...")."""

    def rule(node: gs.Node, ctx: RuleContext) -> None:
        tracked = ctx.tracked_input(node)
        if tracked is None:
            return
        x, shape = tracked
        if mixes(x.axis, int(ctx.attr(node, "axis", -1)) % len(shape)):
            ctx.flow.pin(x.atoms, reason.format(op=node.op, name=node.name))
        ctx.set(node.outputs[0], x.axis, x.atoms)

    return rule


# LayerNormalization normalises over ``axis`` and every later axis; Softmax-like ops mix along ``axis`` only.
layer_norm_rule = _pinned_by_axis(operator.ge, "{op} '{name}' normalises over the channel axis")
axis_mixing_rule = _pinned_by_axis(operator.eq, "{op} '{name}' mixes values across channels")


def channelwise_rule(node: gs.Node, ctx: RuleContext) -> None:
    """Pooling, Resize, Pad: spatial dims may change, the channel dim must not."""
    x = ctx.info(node.inputs[0])
    if x is None:
        return
    y_shape, x_shape = ctx.shape(node.outputs[0]), ctx.shape(node.inputs[0])
    if y_shape is None or x_shape is None or len(y_shape) != len(x_shape) or y_shape[x.axis] != len(x):
        ctx.barrier(node, f"{node.op} '{node.name}' changes the number of channels")
        return
    if node.op == "Pad" and not _pads_spare_axis(node, ctx, x.axis, len(x_shape)):
        ctx.barrier(node, f"Pad '{node.name}' pads the channel axis")
        return
    ctx.set(node.outputs[0], x.axis, x.atoms)


def _pads_spare_axis(node: gs.Node, ctx: RuleContext, axis: int, rank: int) -> bool:
    pads = ctx.const(node.inputs[1]) if len(node.inputs) > 1 else np.asarray(ctx.attr(node, "pads", []))
    if pads is None:
        return False
    pads = pads.astype(np.int64).ravel()
    axes_tensor = node.inputs[3] if len(node.inputs) > 3 and node.inputs[3].name else None
    axes = ctx.const(axes_tensor) if axes_tensor is not None else np.arange(rank)
    if axes is None:
        return False
    axes = [int(a) % rank for a in axes.ravel()]
    if axis not in axes:
        return True
    position = axes.index(axis)
    return pads[position] == 0 and pads[position + len(axes)] == 0


def _broadcasts_one_channel(ctx: RuleContext, tensor: gs.Tensor, info, y_shape: tuple[int, ...]) -> bool:
    """A single tracked channel broadcast over many (a mask over attention heads): pinned, then not tracked."""
    shape = ctx.shape(tensor)
    if len(info) != 1 or shape is None:
        return False
    out_axis = info.axis + len(y_shape) - len(shape)
    if y_shape[out_axis] == 1:
        return False
    ctx.flow.pin(info.atoms, f"a single channel of '{tensor.name}' is broadcast over many")
    return True


def elementwise_rule(node: gs.Node, ctx: RuleContext) -> None:
    """Broadcasting arithmetic: channel-carrying inputs tie; per-channel constants are sliced."""
    y_shape = ctx.shape(node.outputs[0])
    if y_shape is None:
        ctx.barrier(node, f"{node.op} '{node.name}' has an unknown output shape")
        return
    rank = len(y_shape)
    tracked = [(i, t, ctx.info(t)) for i, t in enumerate(node.inputs) if t.name and ctx.info(t) is not None]
    tracked = [entry for entry in tracked if not _broadcasts_one_channel(ctx, entry[1], entry[2], y_shape)]
    if not tracked:
        return
    axes = {info.axis + rank - len(ctx.shape(t) or ()) for _, t, info in tracked}
    lengths = {len(info) for _, _, info in tracked}
    if len(axes) != 1 or len(lengths) != 1:
        ctx.barrier(node, f"{node.op} '{node.name}' combines channels along different axes")
        return
    out_axis = axes.pop()
    first = tracked[0][2]
    for _, _, info in tracked[1:]:
        ctx.flow.tie(first.atoms, info.atoms)
    tracked_indices = {i for i, _, _ in tracked}
    for index, tensor in enumerate(node.inputs):
        if index in tracked_indices or not tensor.name:
            continue
        shape = ctx.shape(tensor)
        if shape is None:
            ctx.barrier(node, f"{node.op} '{node.name}' reads a tensor of unknown shape")
            return
        local_axis = out_axis - (rank - len(shape))
        if local_axis < 0 or shape[local_axis] == 1:
            continue  # broadcast along the channels: nothing to slice
        if ctx.const_shape(tensor) is None:
            ctx.barrier(node, f"{node.op} '{node.name}' reads a computed per-channel tensor")
            return
        ctx.flow.edits.append(SliceConstant(node.name, index, local_axis, tracked[0][1].name))
    ctx.set(node.outputs[0], out_axis, first.atoms)
