"""Shape and layout ops. Shape tensors are int64 CPU tensors computed at run time (dynamic batch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agmc_onnx.errors import UnsupportedOpError
from agmc_onnx.torch_exec.dtypes import torch_dtype
from agmc_onnx.torch_exec.registry import OpContext, OpRegistry, common_device, on_device

__all__ = ["register_shape_ops"]


def _ints(tensor: torch.Tensor | None) -> list[int] | None:
    return None if tensor is None else [int(v) for v in tensor.reshape(-1).tolist()]


def _optional(inputs: list, index: int):
    return inputs[index] if len(inputs) > index else None


def _axes(inputs, attrs, index: int = 1) -> list[int] | None:
    """Axes from an input (opset 13+) or the ``axes`` attribute (older opsets)."""
    from_input = _ints(_optional(inputs, index))
    return from_input if from_input is not None else attrs.get("axes")


def shape(inputs, attrs, ctx):
    dims = list(inputs[0].shape)
    start = attrs.get("start", 0)
    end = attrs.get("end", len(dims))
    return [torch.tensor(dims[start:end], dtype=torch.int64)]


def size(inputs, attrs, ctx):
    return [torch.tensor(inputs[0].numel(), dtype=torch.int64)]


def reshape(inputs, attrs, ctx):
    x = inputs[0]
    target = _ints(inputs[1])
    if not attrs.get("allowzero", 0):
        # 0 copies the input's dimension at the same position.
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return [x.reshape(target)]


def flatten(inputs, attrs, ctx):
    x = inputs[0]
    axis = attrs.get("axis", 1) % (x.dim() + 1) if x.dim() else 0
    lead = 1
    for d in x.shape[:axis]:
        lead *= d
    return [x.reshape(lead, -1) if x.numel() else x.reshape(lead, 0)]


def transpose(inputs, attrs, ctx):
    x = inputs[0]
    perm = attrs.get("perm", list(reversed(range(x.dim()))))
    return [x.permute(*perm)]


def squeeze(inputs, attrs, ctx):
    x = inputs[0]
    axes = _axes(inputs, attrs)
    if axes is None:
        return [x.squeeze()]
    dims = sorted((a % x.dim() for a in axes), reverse=True)
    for dim in dims:
        x = x.squeeze(dim)
    return [x]


def unsqueeze(inputs, attrs, ctx):
    x = inputs[0]
    axes = _axes(inputs, attrs)
    out_rank = x.dim() + len(axes)
    for dim in sorted(a % out_rank for a in axes):
        x = x.unsqueeze(dim)
    return [x]


def concat(inputs, attrs, ctx):
    present = [t for t in inputs if t is not None]
    return [torch.cat(on_device(present, common_device(*present)), dim=attrs["axis"])]


def split(inputs, attrs, ctx):
    x = inputs[0]
    axis = attrs.get("axis", 0)
    sizes = _ints(_optional(inputs, 1)) or attrs.get("split")
    if not sizes:
        parts = attrs.get("num_outputs") or ctx_outputs(ctx)
        length = x.shape[axis]
        chunk = -(-length // parts)  # the last chunk may be smaller (opset 18)
        sizes = [min(chunk, length - i * chunk) for i in range(parts)]
    return list(torch.split(x, sizes, dim=axis))


def ctx_outputs(ctx: OpContext) -> int:
    if ctx.n_outputs <= 0:
        raise UnsupportedOpError(ctx.op_type, ctx.node_name, "cannot tell how many parts to split into")
    return ctx.n_outputs


def _slice_axis(x: torch.Tensor, axis: int, start: int, end: int, step: int) -> torch.Tensor:
    dim = x.shape[axis]
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        return x.narrow(axis, start, max(end - start, 0))[(slice(None),) * axis + (slice(None, None, step),)]
    start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    index = torch.arange(start, end, step, device=x.device)
    return x.index_select(axis, index)


def slice_(inputs, attrs, ctx):
    x = inputs[0]
    if ctx.opset < 10:
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    else:
        starts, ends = _ints(inputs[1]), _ints(inputs[2])
        axes, steps = _ints(_optional(inputs, 3)), _ints(_optional(inputs, 4))
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    for axis, start, end, step in zip(axes, starts, ends, steps):
        x = _slice_axis(x, axis % x.dim(), start, end, step)
    return [x]


def gather(inputs, attrs, ctx):
    data, indices = inputs[:2]
    axis = attrs.get("axis", 0) % data.dim()
    indices = indices.to(device=data.device, dtype=torch.int64)
    indices = torch.where(indices < 0, indices + data.shape[axis], indices)
    picked = data.index_select(axis, indices.reshape(-1))
    return [picked.reshape(tuple(data.shape[:axis]) + tuple(indices.shape) + tuple(data.shape[axis + 1 :]))]


def gather_elements(inputs, attrs, ctx):
    data, indices = inputs[:2]
    axis = attrs.get("axis", 0) % data.dim()
    indices = indices.to(device=data.device, dtype=torch.int64)
    return [torch.gather(data, axis, torch.where(indices < 0, indices + data.shape[axis], indices))]


def cast(inputs, attrs, ctx):
    return [inputs[0].to(torch_dtype(attrs["to"]))]


def check_cast(attrs: dict, ctx: OpContext) -> None:
    try:
        torch_dtype(attrs["to"])
    except TypeError as exc:
        raise UnsupportedOpError(ctx.op_type, ctx.node_name, str(exc)) from None


def identity(inputs, attrs, ctx):
    # The same tensor object: a Parameter read through Identity stays the one Parameter.
    return [inputs[0]]


def constant(inputs, attrs, ctx):
    return [attrs["value"]]


def check_constant(attrs: dict, ctx: OpContext) -> None:
    if "value" not in attrs:
        raise UnsupportedOpError(
            ctx.op_type, ctx.node_name, f"Constant with {sorted(attrs)} is not supported"
        )


def constant_of_shape(inputs, attrs, ctx):
    value = attrs.get("value", torch.zeros(1, dtype=torch.float32))
    return [torch.full(_ints(inputs[0]), value.reshape(-1)[0].item(), dtype=value.dtype)]


def expand(inputs, attrs, ctx):
    x = inputs[0]
    target = torch.broadcast_shapes(tuple(x.shape), tuple(_ints(inputs[1])))
    return [x.expand(target)]


def range_(inputs, attrs, ctx):
    start, limit, delta = inputs[:3]
    return [torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)]


def tile(inputs, attrs, ctx):
    return [inputs[0].repeat(_ints(inputs[1]))]


def pad(inputs, attrs, ctx):
    x = inputs[0]
    if ctx.opset < 11:
        pads, value, axes = list(attrs["pads"]), attrs.get("value", 0.0), None
    else:
        pads = _ints(inputs[1])
        value_tensor = _optional(inputs, 2)
        value = float(value_tensor) if value_tensor is not None and value_tensor.numel() else 0.0
        axes = _ints(_optional(inputs, 3))
    axes = [a % x.dim() for a in axes] if axes is not None else list(range(x.dim()))
    full = [0] * (2 * x.dim())
    for i, axis in enumerate(axes):
        full[axis], full[axis + x.dim()] = pads[i], pads[i + len(axes)]
    torch_pads: list[int] = []
    for axis in reversed(range(x.dim())):
        torch_pads += [full[axis], full[axis + x.dim()]]
    # torch wants the trailing all-zero pairs dropped for reflect/replicate/circular.
    while len(torch_pads) > 2 and torch_pads[-2:] == [0, 0]:
        torch_pads = torch_pads[:-2]
    mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}
    torch_mode = mode[attrs.get("mode", "constant")]
    if torch_mode == "constant":
        return [F.pad(x, torch_pads, value=value)]
    return [F.pad(x, torch_pads, mode=torch_mode)]


def check_pad(attrs: dict, ctx: OpContext) -> None:
    if attrs.get("mode", "constant") not in ("constant", "reflect", "edge", "wrap"):
        raise UnsupportedOpError(ctx.op_type, ctx.node_name, f"pad mode {attrs['mode']} is not supported")


def register_shape_ops(registry: OpRegistry) -> None:
    registry.add("Shape", shape)
    registry.add("Size", size)
    registry.add("Reshape", reshape)
    registry.add("Flatten", flatten)
    registry.add("Transpose", transpose)
    registry.add("Squeeze", squeeze)
    registry.add("Unsqueeze", unsqueeze)
    registry.add("Concat", concat)
    registry.add("Split", split)
    registry.add("Slice", slice_)
    registry.add("Gather", gather)
    registry.add("GatherElements", gather_elements)
    registry.add("Cast", cast, check_cast)
    registry.add("Identity", identity)
    registry.add("Constant", constant, check_constant)
    registry.add("ConstantOfShape", constant_of_shape)
    registry.add("Expand", expand)
    registry.add("Range", range_)
    registry.add("Tile", tile)
    registry.add("Pad", pad, check_pad)
