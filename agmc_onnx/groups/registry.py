"""The one table of per-operator channel-flow rules. Operators not listed here pin their channels."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

import onnx_graphsurgeon as gs

from agmc_onnx.groups import rules_core as core
from agmc_onnx.groups import rules_layout as layout
from agmc_onnx.groups import rules_transformer as transformer
from agmc_onnx.groups.context import RuleContext

__all__ = ["ChannelRule", "CHANNEL_RULES", "rule_for"]

ChannelRule = Callable[[gs.Node, RuleContext], None]

_PASSTHROUGH = (
    "Relu",
    "Clip",
    "HardSwish",
    "HardSigmoid",
    "Sigmoid",
    "Tanh",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Celu",
    "Softplus",
    "Softsign",
    "Gelu",
    "Mish",
    "Erf",
    "Exp",
    "Log",
    "Abs",
    "Neg",
    "Sqrt",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Sin",
    "Cos",
    "ThresholdedRelu",
    "Identity",
    "Cast",
    "Dropout",
    "QuantizeLinear",
    "DequantizeLinear",
)
_ELEMENTWISE = ("Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Sum", "Mean", "PRelu", "Where")
_CHANNELWISE = (
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "LpPool",
    "GlobalLpPool",
    "Resize",
    "Upsample",
    "Pad",
)
_REDUCE = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceProd")


def _build() -> Mapping[str, ChannelRule]:
    table: dict[str, ChannelRule] = {}

    def register(op_types: Iterable[str], rule: ChannelRule) -> None:
        for op_type in op_types:
            if op_type in table:
                raise ValueError(f"channel rule for {op_type} registered twice")
            table[op_type] = rule

    register(["Conv"], core.conv_rule)
    register(["ConvTranspose"], core.conv_transpose_rule)
    register(["Gemm"], core.gemm_rule)
    register(["MatMul"], transformer.matmul_rule)
    register(["BatchNormalization", "InstanceNormalization"], core.normalization_rule)
    register(["LayerNormalization"], core.layer_norm_rule)
    register(["Softmax", "LogSoftmax", "Hardmax"], core.axis_mixing_rule)
    register(_PASSTHROUGH, core.passthrough_rule)
    register(_ELEMENTWISE, core.elementwise_rule)
    register(_CHANNELWISE, core.channelwise_rule)
    register(["Concat"], layout.concat_rule)
    register(["Split"], layout.split_rule)
    register(["Slice"], transformer.slice_rule)
    register(["Gather"], layout.gather_rule)
    register(["Flatten"], layout.flatten_rule)
    register(["Reshape"], transformer.reshape_rule)
    register(["Transpose"], layout.transpose_rule)
    register(["Squeeze"], layout.squeeze_rule)
    register(["Unsqueeze"], layout.unsqueeze_rule)
    register(_REDUCE, layout.reduce_rule)
    register(["Shape", "Size"], _shape_reader_rule)
    return MappingProxyType(table)


def _shape_reader_rule(node: gs.Node, ctx: RuleContext) -> None:
    """Shape/Size read only the shape; their integer outputs carry no channels."""


CHANNEL_RULES: Mapping[str, ChannelRule] = _build()  # the table as imported; also checks the registrations


def _barrier_rule(node: gs.Node, ctx: RuleContext) -> None:
    ctx.barrier(node, f"operator {node.op} '{node.name}' is not understood by the channel analysis")


def rule_for(node: gs.Node) -> ChannelRule:
    """The rule of ``node``'s operator, looked up in a table built for this call (a few microseconds):
    what runs is what ``_build`` says now, also when a mutation tester switches its body at run time."""
    if node.domain not in ("", "ai.onnx", None):
        return _barrier_rule
    return _build().get(node.op, _barrier_rule)
