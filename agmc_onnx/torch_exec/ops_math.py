"""Element-wise arithmetic, activations, comparisons and reductions."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from agmc_onnx.torch_exec.registry import OpRegistry, common_device, on_device

__all__ = ["register_math_ops"]


def _aligned(inputs):
    present = [t for t in inputs if t is not None]
    return on_device(present, common_device(*present))


def _binary(torch_fn):
    def op(inputs, attrs, ctx):
        a, b = _aligned(inputs[:2])
        return [torch_fn(a, b)]

    return op


def _variadic(torch_fn):
    def op(inputs, attrs, ctx):
        return [functools.reduce(torch_fn, _aligned(inputs))]

    return op


def _unary(torch_fn):
    def op(inputs, attrs, ctx):
        return [torch_fn(inputs[0])]

    return op


def div(inputs, attrs, ctx):
    a, b = _aligned(inputs[:2])
    if not a.is_floating_point() and not b.is_floating_point():
        return [torch.div(a, b, rounding_mode="trunc")]  # ONNX integer Div truncates
    return [a / b]


def mod(inputs, attrs, ctx):
    a, b = _aligned(inputs[:2])
    return [torch.fmod(a, b) if attrs.get("fmod", 0) else torch.remainder(a, b)]


def pow_(inputs, attrs, ctx):
    a, b = _aligned(inputs[:2])
    if b.dim() == 0 or b.numel() == 1:
        exponent = float(b.reshape(()))
        if exponent == 2.0:
            return [a * a]
        return [a.pow(exponent)]
    return [a.pow(b.to(a.dtype))]


def clip(inputs, attrs, ctx):
    x = inputs[0]
    if ctx.opset < 11:
        low, high = attrs.get("min"), attrs.get("max")
    else:
        low = float(inputs[1]) if len(inputs) > 1 and inputs[1] is not None else None
        high = float(inputs[2]) if len(inputs) > 2 and inputs[2] is not None else None
    if low == 0.0 and high == 6.0:
        return [F.relu6(x)]
    return [torch.clamp(x, low, high)]


def leaky_relu(inputs, attrs, ctx):
    return [F.leaky_relu(inputs[0], attrs.get("alpha", 0.01))]


def prelu(inputs, attrs, ctx):
    x, slope = _aligned(inputs[:2])
    return [torch.where(x >= 0, x, x * slope)]


def hard_sigmoid(inputs, attrs, ctx):
    alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
    return [torch.clamp(inputs[0] * alpha + beta, 0.0, 1.0)]


def elu(inputs, attrs, ctx):
    return [F.elu(inputs[0], attrs.get("alpha", 1.0))]


def selu(inputs, attrs, ctx):
    alpha = attrs.get("alpha", 1.67326319217681884765625)
    gamma = attrs.get("gamma", 1.05070102214813232421875)
    x = inputs[0]
    return [gamma * torch.where(x > 0, x, alpha * torch.expm1(x))]


def gelu(inputs, attrs, ctx):
    return [F.gelu(inputs[0], approximate=attrs.get("approximate", "none"))]


def _softmax_like(torch_fn):
    def op(inputs, attrs, ctx):
        x = inputs[0]
        if ctx.opset >= 13:
            return [torch_fn(x, dim=attrs.get("axis", -1))]
        # Before opset 13 the input is coerced to 2-D at ``axis`` (default 1).
        axis = attrs.get("axis", 1) % x.dim()
        flat = x.reshape(math.prod(x.shape[:axis]), -1)
        return [torch_fn(flat, dim=1).reshape(x.shape)]

    return op


def where(inputs, attrs, ctx):
    cond, a, b = _aligned(inputs[:3])
    return [torch.where(cond.bool(), a, b)]


def _reduce_axes(inputs, attrs, ctx):
    """Axes from the second input (ReduceSum from opset 13, all reductions from 18) or the attribute."""
    axes_input = inputs[1] if len(inputs) > 1 else None
    if axes_input is not None and axes_input.numel() > 0:
        return [int(a) for a in axes_input.tolist()]
    if "axes" in attrs:
        return list(attrs["axes"])
    return None if attrs.get("noop_with_empty_axes", 0) else list(range(inputs[0].dim()))


def _reduce(kind: str):
    def op(inputs, attrs, ctx):
        x = inputs[0]
        axes = _reduce_axes(inputs, attrs, ctx)
        if axes is None:
            return [x]
        keep = bool(attrs.get("keepdims", 1))
        dims = tuple(a % x.dim() for a in axes) if x.dim() else ()
        if not dims:
            return [x]
        if kind == "mean":
            return [x.mean(dim=dims, keepdim=keep)]
        if kind == "sum":
            return [x.sum(dim=dims, keepdim=keep)]
        if kind == "max":
            return [x.amax(dim=dims, keepdim=keep)]
        if kind == "min":
            return [x.amin(dim=dims, keepdim=keep)]
        if kind == "prod":
            out = x
            for dim in sorted(dims, reverse=True):
                out = out.prod(dim=dim, keepdim=keep)
            return [out]
        return [x.pow(2).sum(dim=dims, keepdim=keep).sqrt()]  # l2

    return op


def _arg(torch_fn):
    def op(inputs, attrs, ctx):
        x = inputs[0]
        axis = attrs.get("axis", 0)
        keep = bool(attrs.get("keepdims", 1))
        if attrs.get("select_last_index", 0):
            flipped = torch_fn(x.flip(axis), dim=axis, keepdim=keep)
            return [x.shape[axis] - 1 - flipped]
        return [torch_fn(x, dim=axis, keepdim=keep)]

    return op


def register_math_ops(registry: OpRegistry) -> None:
    registry.add("Add", _binary(torch.add))
    registry.add("Sub", _binary(torch.sub))
    registry.add("Mul", _binary(torch.mul))
    registry.add("Div", div)
    registry.add("Mod", mod)
    registry.add("Pow", pow_)
    registry.add("Max", _variadic(torch.maximum))
    registry.add("Min", _variadic(torch.minimum))
    registry.add("Sum", _variadic(torch.add))
    registry.add(
        "Mean", lambda inputs, attrs, ctx: [functools.reduce(torch.add, _aligned(inputs)) / len(inputs)]
    )
    registry.add("Equal", _binary(torch.eq))
    registry.add("Less", _binary(torch.lt))
    registry.add("LessOrEqual", _binary(torch.le))
    registry.add("Greater", _binary(torch.gt))
    registry.add("GreaterOrEqual", _binary(torch.ge))
    registry.add("And", _binary(torch.logical_and))
    registry.add("Or", _binary(torch.logical_or))
    registry.add("Not", _unary(torch.logical_not))
    registry.add("Where", where)
    registry.add("Sqrt", _unary(torch.sqrt))
    registry.add("Reciprocal", _unary(torch.reciprocal))
    registry.add("Neg", _unary(torch.neg))
    registry.add("Abs", _unary(torch.abs))
    registry.add("Exp", _unary(torch.exp))
    registry.add("Log", _unary(torch.log))
    registry.add("Floor", _unary(torch.floor))
    registry.add("Ceil", _unary(torch.ceil))
    registry.add("Sign", _unary(torch.sign))
    registry.add("Erf", _unary(torch.erf))
    registry.add("Relu", _unary(F.relu))
    registry.add("Sigmoid", _unary(torch.sigmoid))
    registry.add("Tanh", _unary(torch.tanh))
    registry.add("Softplus", _unary(F.softplus))
    registry.add("Softsign", _unary(F.softsign))
    registry.add("Mish", _unary(F.mish))
    registry.add("HardSwish", _unary(F.hardswish))
    registry.add("HardSigmoid", hard_sigmoid)
    registry.add("Clip", clip)
    registry.add("LeakyRelu", leaky_relu)
    registry.add("PRelu", prelu)
    registry.add("Elu", elu)
    registry.add("Selu", selu)
    registry.add("Gelu", gelu)
    registry.add("Softmax", _softmax_like(torch.softmax))
    registry.add("LogSoftmax", _softmax_like(torch.log_softmax))
    registry.add("ReduceMean", _reduce("mean"))
    registry.add("ReduceSum", _reduce("sum"))
    registry.add("ReduceMax", _reduce("max"))
    registry.add("ReduceMin", _reduce("min"))
    registry.add("ReduceProd", _reduce("prod"))
    registry.add("ReduceL2", _reduce("l2"))
    registry.add("ArgMax", _arg(torch.argmax))
    registry.add("ArgMin", _arg(torch.argmin))
