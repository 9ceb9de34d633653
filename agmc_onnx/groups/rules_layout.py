"""Channel-flow rules of layout ops: Concat, Split, Slice, Gather, Flatten, Reshape, Transpose, (Un)Squeeze, Reduce."""

from __future__ import annotations

import math

import numpy as np
import onnx_graphsurgeon as gs

from agmc_onnx.groups.context import RuleContext
from agmc_onnx.groups.flow import RewriteAttribute

__all__ = [
    "concat_rule",
    "split_rule",
    "slice_rule",
    "gather_rule",
    "flatten_rule",
    "reshape_rule",
    "transpose_rule",
    "squeeze_rule",
    "unsqueeze_rule",
    "reduce_rule",
]


def concat_rule(node: gs.Node, ctx: RuleContext) -> None:
    y_shape = ctx.shape(node.outputs[0])
    infos = [ctx.info(t) for t in node.inputs]
    if all(info is None for info in infos):
        return
    if y_shape is None:
        ctx.barrier(node)
        return
    axis = int(ctx.attr(node, "axis")) % len(y_shape)
    channel_axes = {info.axis for info in infos if info is not None}
    if channel_axes == {axis}:
        pieces = []
        for tensor, info in zip(node.inputs, infos):
            if info is not None:
                pieces.append(info.atoms)
            else:
                width = (ctx.shape(tensor) or (0,) * len(y_shape))[axis]
                pieces.append(ctx.flow.new_atoms(width, f"Concat '{node.name}' joins an untracked tensor"))
        ctx.set(node.outputs[0], axis, np.concatenate(pieces))
        return
    if len(channel_axes) == 1 and all(info is not None for info in infos):
        # Concatenation along another axis: every input carries the same channels.
        for info in infos[1:]:
            ctx.flow.tie(infos[0].atoms, info.atoms)
        ctx.set(node.outputs[0], infos[0].axis, infos[0].atoms)
        return
    ctx.barrier(node, f"Concat '{node.name}' mixes tracked and untracked channels")


def split_rule(node: gs.Node, ctx: RuleContext) -> None:
    tracked = ctx.tracked_input(node)
    if tracked is None:
        return
    x, x_shape = tracked
    axis = int(ctx.attr(node, "axis", 0)) % len(x_shape)
    out_shapes = [ctx.shape(t) for t in node.outputs]
    if any(s is None for s in out_shapes):
        ctx.barrier(node)
        return
    if axis != x.axis:
        for tensor in node.outputs:
            ctx.set(tensor, x.axis, x.atoms)
        return
    offset = 0
    for tensor, shape in zip(node.outputs, out_shapes):
        part = x.atoms[offset : offset + shape[axis]]
        ctx.set(tensor, axis, part)
        _keep_one(ctx, node, part)
        offset += shape[axis]
    ctx.flow.edits.append(RewriteAttribute(node.name, "split", tuple(t.name for t in node.outputs), (axis,)))


def slice_rule(node: gs.Node, ctx: RuleContext) -> None:
    tracked = ctx.tracked_input(node)
    if tracked is None:
        return
    x, x_shape = tracked
    starts, ends = ctx.const(node.inputs[1]), ctx.const(node.inputs[2])
    axes_tensor = node.inputs[3] if len(node.inputs) > 3 and node.inputs[3].name else None
    steps_tensor = node.inputs[4] if len(node.inputs) > 4 and node.inputs[4].name else None
    axes = ctx.const(axes_tensor) if axes_tensor is not None else np.arange(len(starts) if starts is not None else 0)
    steps = ctx.const(steps_tensor) if steps_tensor is not None else np.ones_like(axes)
    if starts is None or ends is None or axes is None or steps is None:
        ctx.barrier(node, f"Slice '{node.name}' has computed bounds")
        return
    axes = [int(a) % len(x_shape) for a in axes.ravel()]
    if x.axis not in axes:
        ctx.set(node.outputs[0], x.axis, x.atoms)
        return
    position = axes.index(x.axis)
    if int(steps.ravel()[position]) != 1:
        ctx.barrier(node, f"Slice '{node.name}' steps over channels")
        return
    start, stop, _ = slice(int(starts.ravel()[position]), int(ends.ravel()[position])).indices(len(x))
    ctx.set(node.outputs[0], x.axis, x.atoms[start:stop])
    if stop - start < len(x):
        _keep_one(ctx, node, x.atoms[start:stop])
    ctx.flow.edits.append(RewriteAttribute(node.name, "slice", (node.inputs[0].name,), (position, start, stop)))


def _keep_one(ctx: RuleContext, node: gs.Node, part: np.ndarray) -> None:
    """A part cut from the channels keeps its first unit, so that no selection can empty it."""
    if len(part):
        ctx.flow.keep(part[:1], f"{node.op} '{node.name}' keeps a channel in each part")


def gather_rule(node: gs.Node, ctx: RuleContext) -> None:
    tracked = ctx.tracked_input(node)
    if tracked is None:
        return
    x, x_shape = tracked
    indices = ctx.const(node.inputs[1])
    axis = int(ctx.attr(node, "axis", 0)) % len(x_shape)
    if indices is None or axis == x.axis:
        ctx.barrier(node, f"Gather '{node.name}' selects channels")
        return
    new_axis = x.axis + indices.ndim - 1 if axis < x.axis else x.axis
    ctx.set(node.outputs[0], new_axis, x.atoms)


def flatten_rule(node: gs.Node, ctx: RuleContext) -> None:
    tracked = ctx.tracked_input(node)
    if tracked is None:
        return
    x, x_shape = tracked
    axis = int(ctx.attr(node, "axis", 1)) % max(len(x_shape), 1)
    if axis == 0 or x.axis < axis:
        ctx.barrier(node, f"Flatten '{node.name}' merges channels with the batch")
        return
    inner = math.prod(x_shape[x.axis + 1 :])
    outer = math.prod(x_shape[axis : x.axis])
    ctx.set(node.outputs[0], 1, np.tile(np.repeat(x.atoms, inner), outer))


def _reshape_target_axis(in_shape, out_shape, axis: int) -> tuple[int, int] | None:
    """Where channel axis ``axis`` lands: (output axis, repeat factor), or None when it is split or moved."""
    prefix = math.prod(in_shape[:axis])
    size = in_shape[axis]
    running = 1
    for out_axis, dim in enumerate(out_shape):
        if running == prefix:
            if dim == size:
                return out_axis, 1
            repeat = 1
            for following in in_shape[axis + 1 :]:
                repeat *= following
                if dim == size * repeat:
                    return out_axis, repeat
            if dim != 1:  # a size-1 axis may sit before the channels' place; anything else splits them
                return None
        running *= dim
        if running > prefix:
            return None
    return None


def reshape_rule(node: gs.Node, ctx: RuleContext) -> None:
    x = ctx.info(node.inputs[0])
    if x is None:
        return
    shapes = (ctx.shape(node.inputs[0]), ctx.shape(node.outputs[0]))
    shapes_alt = (ctx.shape_alt(node.inputs[0]), ctx.shape_alt(node.outputs[0]))
    if None in shapes or None in shapes_alt:
        ctx.barrier(node)
        return
    target = _reshape_target_axis(*shapes, x.axis)
    # The same answer with another batch size proves the batch does not merge with the channels.
    if target is None or target != _reshape_target_axis(*shapes_alt, x.axis):
        ctx.barrier(node, f"Reshape '{node.name}' splits or regroups channels")
        return
    out_axis, repeat = target
    ctx.set(node.outputs[0], out_axis, np.repeat(x.atoms, repeat))
    located = _locate_target_entry(node, ctx, out_axis)
    if located is None:
        ctx.barrier(node, f"Reshape '{node.name}' has a computed target shape")
        return
    piece_node, piece_index, offset, value = located
    keeps_by_copy = value == 0 and out_axis == x.axis and repeat == 1
    if value != -1 and not keeps_by_copy:
        ctx.flow.edits.append(RewriteAttribute(piece_node, "reshape", (node.outputs[0].name,), (piece_index, offset)))


def _locate_target_entry(node: gs.Node, ctx: RuleContext, out_axis: int) -> tuple[str, int, int, int] | None:
    """The constant holding entry ``out_axis`` of a Reshape target: (node, input index, offset, value).

    The target is either a constant or a Concat of 1-D pieces (``x.view(x.size(0), -1)`` exports that way);
    the entry must sit in a constant piece so it can be rewritten.
    """
    target = node.inputs[1]
    values = ctx.const(target)
    if values is not None:
        return node.name, 1, out_axis, int(values.ravel()[out_axis])
    piece = target_piece(node, ctx, out_axis)
    if piece is None:
        return None
    producer, index, offset = piece
    piece_values = ctx.const(producer.inputs[index])
    if piece_values is None:
        return None
    return producer.name, index, offset, int(piece_values.ravel()[offset])


def target_piece(node: gs.Node, ctx: RuleContext, out_axis: int) -> tuple[gs.Node, int, int] | None:
    """(Concat, input index, offset in the piece) of the 1-D piece of a Concat-built Reshape target that
    holds entry ``out_axis``, or None when the target is not built that way."""
    target = node.inputs[1]
    producer = target.inputs[0] if len(target.inputs) == 1 else None
    if producer is None or producer.op != "Concat":
        return None
    offset = 0
    for index, piece in enumerate(producer.inputs):
        shape = ctx.shape(piece)
        if shape is None or len(shape) != 1:
            return None
        if offset <= out_axis < offset + shape[0]:
            return producer, index, out_axis - offset
        offset += shape[0]
    return None


def transpose_rule(node: gs.Node, ctx: RuleContext) -> None:
    tracked = ctx.tracked_input(node)
    if tracked is None:
        return
    x, x_shape = tracked
    perm = list(ctx.attr(node, "perm", list(reversed(range(len(x_shape))))))
    ctx.set(node.outputs[0], perm.index(x.axis), x.atoms)


def _axes_of(node: gs.Node, ctx: RuleContext) -> list[int] | None:
    if "axes" in node.attrs:
        return [int(a) for a in node.attrs["axes"]]
    if len(node.inputs) > 1 and node.inputs[1].name:
        values = ctx.const(node.inputs[1])
        return None if values is None else [int(a) for a in values.ravel()]
    return []


def _tracked_with_axes(node: gs.Node, ctx: RuleContext, shape_of: gs.Tensor | None = None):
    """(channels, shape, axes) for the axis-taking ops, or None once the rule has nothing more to do."""
    tracked = ctx.tracked_input(node, shape_of)
    if tracked is None:
        return None
    axes = _axes_of(node, ctx)
    if axes is None:
        ctx.barrier(node, f"{node.op} '{node.name}' has computed axes")
        return None
    return (*tracked, axes)


def squeeze_rule(node: gs.Node, ctx: RuleContext) -> None:
    tracked = _tracked_with_axes(node, ctx)
    if tracked is None:
        return
    x, x_shape, axes = tracked
    axes = [a % len(x_shape) for a in axes] or [i for i, d in enumerate(x_shape) if d == 1]
    if x.axis in axes:
        ctx.barrier(node, f"Squeeze '{node.name}' removes the channel axis")
        return
    ctx.set(node.outputs[0], x.axis - sum(a < x.axis for a in axes), x.atoms)


def unsqueeze_rule(node: gs.Node, ctx: RuleContext) -> None:
    tracked = _tracked_with_axes(node, ctx, node.outputs[0])
    if tracked is None:
        return
    x, y_shape, axes = tracked
    new_axis = x.axis
    for axis in sorted(a % len(y_shape) for a in axes):
        if axis <= new_axis:
            new_axis += 1
    ctx.set(node.outputs[0], new_axis, x.atoms)


def reduce_rule(node: gs.Node, ctx: RuleContext) -> None:
    tracked = _tracked_with_axes(node, ctx)
    if tracked is None:
        return
    x, x_shape, axes = tracked
    if not axes:
        if int(ctx.attr(node, "noop_with_empty_axes", 0)):
            ctx.set(node.outputs[0], x.axis, x.atoms)
            return
        axes = list(range(len(x_shape)))
    axes = [a % len(x_shape) for a in axes]
    if x.axis in axes:
        ctx.barrier(node, f"{node.op} '{node.name}' reduces over channels")
        return
    keepdims = int(ctx.attr(node, "keepdims", 1))
    new_axis = x.axis if keepdims else x.axis - sum(a < x.axis for a in axes)
    ctx.set(node.outputs[0], new_axis, x.atoms)
