"""Channel-flow rules for attention heads and channel shuffles.

Attention: a Reshape splits a projection's channels into (heads, head width) — timm's fused QKV splits
them into (3, heads, head width) — and a head is then kept or dropped as a whole: its positions are tied
into one unit and the reshaped tensor tracks the heads axis. A MatMul of two computed tensors (scores
= Q·Kᵀ, context = P·V) ties the heads of both operands when they sit on the same batch axis. Dropping a
head is exact under the oracle: its values only reach the output through the rows of the output
projection that the oracle zeroes.

Channel shuffle (Reshape to (groups, C/groups) → Transpose swapping them → Reshape back) is followed as
a permutation: channel i of every group is tied, so each group keeps the same positions and the shuffle
still interleaves the kept channels in their original order; the C/groups entry of the target shape is
rewritten.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_graphsurgeon as gs

from agmc_onnx.groups import rules_core as core
from agmc_onnx.groups import rules_layout as layout
from agmc_onnx.groups.context import RuleContext
from agmc_onnx.groups.flow import RewriteAttribute

__all__ = ["reshape_rule", "matmul_rule", "slice_rule", "static_value"]


def _split_axes(in_shape, out_shape, axis: int) -> tuple[int, int] | None:
    """Channel axis ``axis`` split into output axes [start, start + count), count ≥ 2, or None."""
    prefix, size = math.prod(in_shape[:axis]), in_shape[axis]
    running, start = 1, None
    for out_axis, dim in enumerate(out_shape):  # the last axis the prefix ends at (size-1 axes may precede)
        if running == prefix:
            start = out_axis
        running *= dim
        if running > prefix:
            break
    if start is None:
        return None
    product, count = 1, 0
    while start + count < len(out_shape) and product < size:
        product *= out_shape[start + count]
        count += 1
    if product != size or count < 2 or out_shape[start] == 1:
        return None
    return start, count


def _is_shuffle(node: gs.Node, start: int) -> bool:
    """The reshaped tensor feeds only a Transpose that swaps the two split axes."""
    consumers = node.outputs[0].outputs
    if len(consumers) != 1 or consumers[0].op != "Transpose":
        return False
    perm = list(consumers[0].attrs.get("perm", []))
    return len(perm) > start + 1 and perm[start] == start + 1 and perm[start + 1] == start


def reshape_rule(node: gs.Node, ctx: RuleContext) -> None:
    """Reshapes that keep, merge or split the channel axis; anything else goes to the layout rule's barrier."""
    x = ctx.info(node.inputs[0])
    shapes = (ctx.shape(node.inputs[0]), ctx.shape(node.outputs[0]))
    shapes_alt = (ctx.shape_alt(node.inputs[0]), ctx.shape_alt(node.outputs[0]))
    if x is None or None in shapes or None in shapes_alt:
        layout.reshape_rule(node, ctx)
        return
    merged = layout._reshape_target_axis(*shapes, x.axis)
    if merged is not None and merged == layout._reshape_target_axis(*shapes_alt, x.axis):
        out_axis, repeat = merged
        atoms = np.repeat(x.atoms, repeat)
        if _record_target_edit(node, ctx, out_axis, atoms, keeps_by_copy=out_axis == x.axis and repeat == 1):
            ctx.set(node.outputs[0], out_axis, atoms)
        return
    split = _split_axes(*shapes, x.axis)
    if split is None or split != _split_axes(*shapes_alt, x.axis):
        layout.reshape_rule(node, ctx)
        return
    start, count = split
    dims = shapes[1][start : start + count]
    shuffle = count == 2 and _is_shuffle(node, start)
    tracked = 1 if shuffle else count - 2  # C/groups for a shuffle, the heads axis otherwise
    index = np.indices(dims).reshape(count, -1)[tracked]  # tracked-axis coordinate of every channel
    representatives = []
    for value in range(dims[tracked]):
        members = x.atoms[index == value]
        ctx.flow.tie_all(members)
        representatives.append(members[0])
    atoms = np.asarray(representatives, dtype=np.int64)
    if _record_target_edit(node, ctx, start + tracked, atoms):
        ctx.set(node.outputs[0], start + tracked, atoms)


def _record_target_edit(
    node: gs.Node, ctx: RuleContext, out_axis: int, atoms: np.ndarray, keeps_by_copy: bool = False
) -> bool:
    """Record how entry ``out_axis`` of the target shape follows the kept channels ``atoms``; False after a
    barrier.

    A constant entry is rewritten (-1 and a copying 0 need nothing); an entry read from the shape of a
    tensor that carries the same channels on that axis (``y.reshape_as(x)``) follows by itself once the
    two are tied; another entry computed at run time is replaced by a constant when it is a one-element
    piece of a Concat and batch-independent.
    """
    out_name = node.outputs[0].name
    located = layout._locate_target_entry(node, ctx, out_axis)
    if located is not None:
        piece_node, piece_index, offset, value = located
        if value != -1 and not (value == 0 and keeps_by_copy):
            ctx.flow.edits.append(RewriteAttribute(piece_node, "reshape", (out_name,), (piece_index, offset)))
        return True
    source = _shape_source(node, ctx, out_axis)
    if source is not None and source.axis == out_axis and len(source) == len(atoms):
        ctx.flow.tie(atoms, source.atoms)
        return True
    piece = _computed_piece(node, ctx, out_axis)
    if piece is None or ctx.shape(node.outputs[0])[out_axis] != ctx.shape_alt(node.outputs[0])[out_axis]:
        ctx.barrier(node, f"Reshape '{node.name}' has a computed target shape")
        return False
    ctx.flow.edits.append(RewriteAttribute(piece[0], "reshape_piece", (out_name,), (piece[1],)))
    return True


def _shape_source(node: gs.Node, ctx: RuleContext, out_axis: int):
    """The channels of the tensor whose ``Shape`` entry ``out_axis`` of the target reads, when that entry is
    read at the same index (the whole Shape, or a piece of it sliced from 0, inside a Concat); else None."""
    target, offset = node.inputs[1], out_axis
    piece = layout.target_piece(node, ctx, out_axis)
    if piece is not None:
        target, offset = piece[0].inputs[piece[1]], piece[2]
    producer = target.inputs[0] if len(target.inputs) == 1 else None
    if producer is not None and producer.op == "Slice" and piece is not None:
        starts = ctx.const(producer.inputs[1])
        steps = ctx.const(producer.inputs[4]) if len(producer.inputs) > 4 else np.ones(1)
        # The piece must start at the Shape entry of the target entry's own index, one by one.
        if starts is None or starts.size != 1 or int(starts.ravel()[0]) != out_axis - offset or steps is None:
            return None
        if np.any(steps != 1):
            return None
        target = producer.inputs[0]
        producer = target.inputs[0] if len(target.inputs) == 1 else None
    if producer is None or producer.op != "Shape" or "start" in producer.attrs or "end" in producer.attrs:
        return None
    return ctx.info(producer.inputs[0])


def _computed_piece(node: gs.Node, ctx: RuleContext, out_axis: int) -> tuple[str, int] | None:
    """(Concat node, input index) of the one-element computed piece holding entry ``out_axis``."""
    piece = layout.target_piece(node, ctx, out_axis)
    if piece is None or ctx.shape(piece[0].inputs[piece[1]]) != (1,):
        return None
    return piece[0].name, piece[1]


def matmul_rule(node: gs.Node, ctx: RuleContext) -> None:
    """MatMul with a 2-D constant weight goes to the core rule; two computed operands tie shared batch axes."""
    if ctx.const_shape(node.inputs[1]) is not None or ctx.const_shape(node.inputs[0]) is not None:
        core.matmul_rule(node, ctx)
        return
    y_shape = ctx.shape(node.outputs[0])
    operands = [(t, ctx.info(t), ctx.shape(t)) for t in node.inputs[:2]]
    if all(info is None for _, info, _ in operands):
        return
    reason = f"MatMul '{node.name}' multiplies two computed tensors along their channels"
    if y_shape is None or any(shape is None for _, _, shape in operands):
        ctx.barrier(node, reason)
        return
    tracked = []
    for tensor, info, shape in operands:
        if info is None:
            continue
        if info.axis >= len(shape) - 2 or len(shape) < 3:
            ctx.barrier(node, reason)
            return
        tracked.append((info, info.axis + len(y_shape) - len(shape)))
    axes = {axis for _, axis in tracked}
    if len(axes) != 1 or len({len(info) for info, _ in tracked}) != 1:
        ctx.barrier(node, reason)
        return
    out_axis = axes.pop()
    for tensor, info, shape in operands:
        local = out_axis - (len(y_shape) - len(shape))
        if info is None and local >= 0 and shape[local] != 1:
            ctx.barrier(node, f"MatMul '{node.name}' reads a computed per-head tensor")
            return
    first = tracked[0][0]
    for info, _ in tracked[1:]:
        ctx.flow.tie(first.atoms, info.atoms)
    ctx.set(node.outputs[0], out_axis, first.atoms)


_SHAPE_ARITHMETIC = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": np.floor_divide,
}


def static_value(tensor: gs.Tensor, shapes, depth: int = 0) -> np.ndarray | None:
    """The value of a small integer tensor computed from static shapes (Shape → Gather → Div …), or None."""
    if isinstance(tensor, gs.Constant):
        return np.asarray(tensor.values)
    if depth > 12 or len(tensor.inputs) != 1:
        return None
    node = tensor.inputs[0]
    if node.op == "Shape":
        shape = shapes.get(node.inputs[0].name)
        if shape is None or node.attrs.get("start") is not None or node.attrs.get("end") is not None:
            return None
        return np.asarray(shape, dtype=np.int64)
    values = [static_value(t, shapes, depth + 1) for t in node.inputs]
    if any(v is None for v in values):
        return None
    if node.op in _SHAPE_ARITHMETIC:
        return _SHAPE_ARITHMETIC[node.op](values[0], values[1])
    if node.op == "Gather" and int(node.attrs.get("axis", 0)) == 0:
        return np.take(values[0], values[1], axis=0)
    if node.op == "Unsqueeze":
        return values[0].reshape(-1)
    if node.op in ("Cast", "Identity"):
        return values[0].astype(np.int64)
    if node.op == "Concat":
        return np.concatenate([v.reshape(-1) for v in values])
    return None


def slice_rule(node: gs.Node, ctx: RuleContext) -> None:
    """Slices whose one-axis bounds are computed from static shapes (``x.chunk(2, 1)``) are followed too.

    The bounds are evaluated from the static shapes (the same with batch 1 and 2); the pruning pass then
    writes the new bounds as constants.
    """
    computed = any(ctx.const_shape(t) is None for t in node.inputs[1:3])
    if not computed or ctx.info(node.inputs[0]) is None:
        layout.slice_rule(node, ctx)
        return
    bounds = [static_value(t, ctx.shapes) for t in node.inputs[1:3]]
    bounds_alt = [static_value(t, ctx.shapes_alt) for t in node.inputs[1:3]]
    if any(b is None or b.size != 1 for b in bounds) or any(
        not np.array_equal(a, b) for a, b in zip(bounds, bounds_alt)
    ):
        layout.slice_rule(node, ctx)
        return
    original = list(node.inputs[1:3])
    for index, bound in enumerate(bounds, start=1):
        node.inputs[index] = gs.Constant(f"{node.name}__bound{index}", bound.astype(np.int64))
    n_edits = len(ctx.flow.edits)
    try:
        layout.slice_rule(node, ctx)
    finally:
        node.inputs[1], node.inputs[2] = original
    for index in range(n_edits, len(ctx.flow.edits)):
        edit = ctx.flow.edits[index]
        if isinstance(edit, RewriteAttribute) and edit.node == node.name and edit.kind == "slice":
            ctx.flow.edits[index] = RewriteAttribute(edit.node, "slice_computed", edit.tensors, edit.detail)
