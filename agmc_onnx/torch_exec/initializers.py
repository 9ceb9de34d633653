"""Decides what each initializer becomes in torch: a trainable Parameter, a running-statistics buffer or a
constant.

The decision follows how the graph consumes the initializer, looking through views of it: ``Identity``
aliases (exporters replace bit-identical tensors by ``Identity`` nodes reading one initializer; such a
value stays tied to that one initializer so the trained graph keeps its structure) and layout ops such
as the ``Transpose`` an unfolded ``Linear`` puts in front of ``MatMul``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

import onnx

from agmc_onnx.torch_exec.dtypes import FLOAT_TYPES

__all__ = ["InitializerRole", "InitializerPlan", "plan_initializers"]


class InitializerRole(enum.Enum):
    WEIGHT = "weight"  # Conv/ConvTranspose/Gemm/MatMul weight: the only role that gets weight decay
    BIAS = "bias"
    NORM = "norm"  # normalisation scale and shift
    SLOPE = "slope"  # PRelu
    AFFINE = "affine"  # per-channel Mul/Add constant (layer scale, folded affine)
    RUNNING_STAT = "running_stat"  # BatchNormalization mean/var: buffers, updated in training mode
    CONSTANT = "constant"  # everything else: shapes, indices, scalars, Clip bounds

    @property
    def trainable(self) -> bool:
        return self in _TRAINABLE


_TRAINABLE = frozenset(
    {
        InitializerRole.WEIGHT,
        InitializerRole.BIAS,
        InitializerRole.NORM,
        InitializerRole.SLOPE,
        InitializerRole.AFFINE,
    }
)

_R = InitializerRole
_SLOT_ROLES: dict[str, dict[int, InitializerRole]] = {
    "Conv": {1: _R.WEIGHT, 2: _R.BIAS},
    "ConvTranspose": {1: _R.WEIGHT, 2: _R.BIAS},
    "Gemm": {0: _R.WEIGHT, 1: _R.WEIGHT, 2: _R.BIAS},
    "MatMul": {0: _R.WEIGHT, 1: _R.WEIGHT},
    "BatchNormalization": {1: _R.NORM, 2: _R.NORM, 3: _R.RUNNING_STAT, 4: _R.RUNNING_STAT},
    "InstanceNormalization": {1: _R.NORM, 2: _R.NORM},
    "LayerNormalization": {1: _R.NORM, 2: _R.NORM},
    "PRelu": {1: _R.SLOPE},
}
# Scalars in Mul/Add are fixed arithmetic (GELU's 0.5, HardSwish's 1/6); per-channel tensors are learnt.
_AFFINE_OPS = frozenset({"Mul", "Add"})
# Ops whose output is a re-laid-out copy of their first input; the other inputs are shapes/axes.
_VIEW_OPS = frozenset({"Identity", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze"})
# When one initializer is consumed in several ways, the strongest role wins (trainable beats constant).
_PRIORITY = [_R.WEIGHT, _R.BIAS, _R.NORM, _R.SLOPE, _R.AFFINE, _R.RUNNING_STAT, _R.CONSTANT]


@dataclass(frozen=True)
class InitializerPlan:
    roles: Mapping[str, InitializerRole]  # initializer name -> role
    views: Mapping[str, str]  # value name -> the initializer it is a view of (Identity, Transpose, ...)


def _element_count(proto: onnx.TensorProto) -> int:
    count = 1
    for dim in proto.dims:
        count *= dim
    return count


def _slot_role(node: onnx.NodeProto, slot: int, proto: onnx.TensorProto) -> InitializerRole:
    if proto.data_type not in FLOAT_TYPES:
        return _R.CONSTANT
    if node.op_type in _AFFINE_OPS:
        return _R.AFFINE if _element_count(proto) > 1 else _R.CONSTANT
    return _SLOT_ROLES.get(node.op_type, {}).get(slot, _R.CONSTANT)


def plan_initializers(graph: onnx.GraphProto) -> InitializerPlan:
    initializers = {proto.name: proto for proto in graph.initializer}
    views: dict[str, str] = {}
    for node in graph.node:
        if node.op_type in _VIEW_OPS and node.input and node.output:
            source = views.get(node.input[0], node.input[0])
            if source in initializers:
                views[node.output[0]] = source
    roles = {name: _R.CONSTANT for name in initializers}
    for node in graph.node:
        for slot, name in enumerate(node.input):
            if node.op_type in _VIEW_OPS and slot == 0:
                continue  # a view's consumers decide its role
            source = views.get(name, name)
            if source not in initializers:
                continue
            role = _slot_role(node, slot, initializers[source])
            if _PRIORITY.index(role) < _PRIORITY.index(roles[source]):
                roles[source] = role
    return InitializerPlan(roles=roles, views=views)
