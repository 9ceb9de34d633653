"""Layers with weights and windows: convolutions, Gemm/MatMul, pooling, normalisation, Dropout, Resize."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from agmc_onnx.errors import UnsupportedOpError
from agmc_onnx.torch_exec.registry import OpContext, OpRegistry, common_device, on_device

__all__ = ["register_nn_ops"]


def _same_pads(in_sizes, kernel, strides, dilations, lower: bool) -> list[int]:
    """ONNX SAME_UPPER/SAME_LOWER padding, computed from the run-time spatial size."""
    begins, ends = [], []
    for size, k, s, d in zip(in_sizes, kernel, strides, dilations):
        out = math.ceil(size / s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begins.append(large if lower else small)
        ends.append(small if lower else large)
    return begins + ends


def _window_pads(x: torch.Tensor, attrs: dict, kernel: list[int]) -> list[int]:
    rank = len(kernel)
    strides = attrs.get("strides", [1] * rank)
    dilations = attrs.get("dilations", [1] * rank)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return _same_pads(x.shape[2:], kernel, strides, dilations, auto_pad == "SAME_LOWER")
    if auto_pad == "VALID":
        return [0] * (2 * rank)
    return list(attrs.get("pads", [0] * (2 * rank)))


def _torch_pad_order(pads: list[int]) -> list[int]:
    """ONNX [b1, b2, ..., e1, e2, ...] -> F.pad's (b_last, e_last, ..., b_first, e_first)."""
    rank = len(pads) // 2
    order: list[int] = []
    for axis in reversed(range(rank)):
        order += [pads[axis], pads[axis + rank]]
    return order


def _symmetric(pads: list[int]) -> bool:
    rank = len(pads) // 2
    return pads[:rank] == pads[rank:]


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _check_rank(attrs: dict, ctx: OpContext) -> None:
    kernel = attrs.get("kernel_shape")
    if kernel is not None and len(kernel) not in (1, 2, 3):
        raise UnsupportedOpError(ctx.op_type, ctx.node_name, f"{len(kernel)}-D windows are not supported")


def conv(inputs, attrs, ctx):
    x, weight, bias = (inputs + [None])[:3]
    rank = weight.dim() - 2
    pads = _window_pads(x, attrs, list(weight.shape[2:]))
    padding = pads[:rank]
    if not _symmetric(pads):
        x = F.pad(x, _torch_pad_order(pads))
        padding = [0] * rank
    out = _CONV[rank](
        x,
        weight,
        bias,
        attrs.get("strides", [1] * rank),
        padding,
        attrs.get("dilations", [1] * rank),
        attrs.get("group", 1),
    )
    return [out]


def conv_transpose(inputs, attrs, ctx):
    x, weight, bias = (inputs + [None])[:3]
    rank = weight.dim() - 2
    kernel = list(weight.shape[2:])
    strides = attrs.get("strides", [1] * rank)
    dilations = attrs.get("dilations", [1] * rank)
    output_padding = list(attrs.get("output_padding", [0] * rank))
    full_sizes = [
        s * (n - 1) + op + (k - 1) * d + 1
        for n, s, op, k, d in zip(x.shape[2:], strides, output_padding, kernel, dilations)
    ]
    if "output_shape" in attrs:
        totals = [f - o for f, o in zip(full_sizes, attrs["output_shape"][-rank:])]
        lower = attrs.get("auto_pad", "NOTSET") == "SAME_LOWER"
        pads = [t - t // 2 if lower else t // 2 for t in totals] + [
            t // 2 if lower else t - t // 2 for t in totals
        ]
    elif attrs.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        totals = [f - n * s for f, n, s in zip(full_sizes, x.shape[2:], strides)]
        lower = attrs["auto_pad"] == "SAME_LOWER"
        pads = [t - t // 2 if lower else t // 2 for t in totals] + [
            t // 2 if lower else t - t // 2 for t in totals
        ]
    else:
        pads = list(attrs.get("pads", [0] * (2 * rank)))
    # Full transposed convolution, then crop: covers asymmetric pads and output_shape alike.
    out = _CONV_T[rank](x, weight, bias, strides, 0, output_padding, attrs.get("group", 1), dilations)
    index = [slice(None), slice(None)] + [
        slice(begin, out.shape[2 + i] - end) for i, (begin, end) in enumerate(zip(pads[:rank], pads[rank:]))
    ]
    return [out[tuple(index)]]


def gemm(inputs, attrs, ctx):
    a, b, c = (inputs + [None])[:3]
    if attrs.get("transA", 0):
        a = a.transpose(0, 1)
    if attrs.get("transB", 0):
        b = b.transpose(0, 1)
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    if c is None:
        out = a @ b
        return [out * alpha if alpha != 1.0 else out]
    if alpha == 1.0 and beta == 1.0 and c.dim() <= 2:
        return [torch.addmm(c.expand(a.shape[0], b.shape[1]) if c.dim() == 2 else c, a, b)]
    return [alpha * (a @ b) + beta * c]


def matmul(inputs, attrs, ctx):
    a, b = on_device(inputs[:2], common_device(*inputs[:2]))
    return [torch.matmul(a, b)]


def _pool_setup(x, attrs):
    kernel = list(attrs["kernel_shape"])
    rank = len(kernel)
    pads = _window_pads(x, attrs, kernel)
    return kernel, rank, pads, attrs.get("strides", [1] * rank)


def _native_padding_ok(pads: list[int], kernel: list[int]) -> bool:
    rank = len(kernel)
    return _symmetric(pads) and all(p <= k // 2 for p, k in zip(pads[:rank], kernel))


def max_pool(inputs, attrs, ctx):
    x = inputs[0]
    kernel, rank, pads, strides = _pool_setup(x, attrs)
    padding = pads[:rank]
    if not _native_padding_ok(pads, kernel):
        x = F.pad(x, _torch_pad_order(pads), value=-math.inf)
        padding = [0] * rank
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[rank]
    dilations = attrs.get("dilations", [1] * rank)
    return [pool(x, kernel, strides, padding, dilations, bool(attrs.get("ceil_mode", 0)))]


def average_pool(inputs, attrs, ctx):
    x = inputs[0]
    kernel, rank, pads, strides = _pool_setup(x, attrs)
    ceil_mode = bool(attrs.get("ceil_mode", 0))
    include_pad = bool(attrs.get("count_include_pad", 0))
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[rank]
    if _native_padding_ok(pads, kernel):
        return [pool(x, kernel, strides, pads[:rank], ceil_mode, include_pad)]
    # Asymmetric or oversized pads: sum over an explicitly padded input, divide by the right count.
    area = math.prod(kernel)
    padded = F.pad(x, _torch_pad_order(pads))
    sums = pool(padded, kernel, strides, 0, ceil_mode, True) * area
    if include_pad:
        return [sums / area]
    ones = F.pad(torch.ones_like(x[:1, :1]), _torch_pad_order(pads))
    counts = pool(ones, kernel, strides, 0, ceil_mode, True) * area
    return [sums / counts]


def global_average_pool(inputs, attrs, ctx):
    x = inputs[0]
    return [x.mean(dim=tuple(range(2, x.dim())), keepdim=True)]


def global_max_pool(inputs, attrs, ctx):
    x = inputs[0]
    return [x.amax(dim=tuple(range(2, x.dim())), keepdim=True)]


def batch_normalization(inputs, attrs, ctx):
    x, scale, bias, mean, var = inputs[:5]
    eps = attrs.get("epsilon", 1e-5)
    if ctx.training:
        # ONNX momentum m: running = running * m + batch * (1 - m); torch's momentum is 1 - m.
        # The running tensors are the module's buffers, so torch updates them in place.
        momentum = 1.0 - attrs.get("momentum", 0.9)
        return [F.batch_norm(x, mean, var, scale, bias, True, momentum, eps)]
    return [F.batch_norm(x, mean, var, scale, bias, False, 0.0, eps)]


def instance_normalization(inputs, attrs, ctx):
    x, scale, bias = inputs[:3]
    return [F.instance_norm(x, weight=scale, bias=bias, eps=attrs.get("epsilon", 1e-5))]


def layer_normalization(inputs, attrs, ctx):
    x, scale, bias = (inputs + [None])[:3]
    axis = attrs.get("axis", -1) % x.dim()
    eps = attrs.get("epsilon", 1e-5)
    normalized_shape = tuple(x.shape[axis:])
    if tuple(scale.shape) == normalized_shape and (bias is None or tuple(bias.shape) == normalized_shape):
        return [F.layer_norm(x, normalized_shape, scale, bias, eps)]
    dims = tuple(range(axis, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    var = (x - mean).pow(2).mean(dim=dims, keepdim=True)
    out = (x - mean) * torch.rsqrt(var + eps) * scale
    return [out + bias if bias is not None else out]


def dropout(inputs, attrs, ctx):
    x = inputs[0]
    ratio_input = inputs[1] if len(inputs) > 1 else None
    ratio = float(ratio_input) if ratio_input is not None else attrs.get("ratio", 0.5)
    if not ctx.training or ratio == 0.0:
        return [x, torch.ones_like(x, dtype=torch.bool)]
    keep = torch.rand_like(x, dtype=torch.float32) >= ratio
    return [x * keep / (1.0 - ratio), keep]


_RESIZE_MODES = {
    ("nearest", "asymmetric", "floor"): ("nearest", None),
    ("nearest", "half_pixel", "round_prefer_ceil"): ("nearest-exact", None),
    ("nearest", "pytorch_half_pixel", "round_prefer_ceil"): ("nearest-exact", None),
    ("linear", "half_pixel", None): ("linear", False),
    ("linear", "pytorch_half_pixel", None): ("linear", False),
    ("linear", "align_corners", None): ("linear", True),
}


def _resize_key(attrs: dict) -> tuple:
    mode = attrs.get("mode", "nearest")
    transform = attrs.get("coordinate_transformation_mode", "half_pixel")
    nearest = attrs.get("nearest_mode", "round_prefer_floor") if mode == "nearest" else None
    return mode, transform, nearest


def check_resize(attrs: dict, ctx: OpContext) -> None:
    if _resize_key(attrs) not in _RESIZE_MODES:
        mode, transform, nearest = _resize_key(attrs)
        raise UnsupportedOpError(
            ctx.op_type,
            ctx.node_name,
            f"mode={mode}, coordinate_transformation_mode={transform}, "
            f"nearest_mode={nearest} is not supported (supported: {sorted(map(str, _RESIZE_MODES))})",
        )
    if attrs.get("antialias", 0) or attrs.get("axes") or attrs.get("exclude_outside", 0):
        raise UnsupportedOpError(
            ctx.op_type, ctx.node_name, "antialias/axes/exclude_outside are not supported"
        )


def resize(inputs, attrs, ctx):
    x = inputs[0]
    scales = inputs[2] if len(inputs) > 2 else None
    sizes = inputs[3] if len(inputs) > 3 else None
    if ctx.opset < 11:  # opset 10: Resize(X, scales)
        scales, sizes = inputs[1], None
    mode, align_corners = _RESIZE_MODES[_resize_key(attrs)]
    spatial = x.dim() - 2
    if mode == "linear":
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[spatial]
    if sizes is not None and sizes.numel() > 0:
        size = [int(s) for s in sizes.tolist()[2:]]
        return [F.interpolate(x, size=size, mode=mode, align_corners=align_corners)]
    factors = [float(s) for s in scales.tolist()[2:]]
    return [
        F.interpolate(
            x, scale_factor=factors, mode=mode, align_corners=align_corners, recompute_scale_factor=False
        )
    ]


def register_nn_ops(registry: OpRegistry) -> None:
    registry.add("Conv", conv, _check_rank)
    registry.add("ConvTranspose", conv_transpose, _check_rank)
    registry.add("Gemm", gemm)
    registry.add("MatMul", matmul)
    registry.add("MaxPool", max_pool, _check_rank)
    registry.add("AveragePool", average_pool, _check_rank)
    registry.add("GlobalAveragePool", global_average_pool)
    registry.add("GlobalMaxPool", global_max_pool)
    registry.add("BatchNormalization", batch_normalization)
    registry.add("InstanceNormalization", instance_normalization)
    registry.add("LayerNormalization", layer_normalization)
    registry.add("Dropout", dropout)
    registry.add("Resize", resize, check_resize)
