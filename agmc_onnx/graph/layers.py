"""Per-operator facts (channels, spatial size, MACs, parameters) and the networkx graph of operators."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import onnx_graphsurgeon as gs

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["LayerInfo", "describe_layers", "build_layer_graph", "WEIGHTED_OPS"]

WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


@dataclass(frozen=True)
class LayerInfo:
    """One operator as the search and the reports see it. Plain data: no graphsurgeon objects."""

    name: str
    op_type: str
    topo_index: int
    in_channels: int
    out_channels: int
    out_spatial: tuple[int, ...]
    macs: int
    params: int
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()
    dilations: tuple[int, ...] = ()
    groups: int = 1
    attrs: Mapping[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["attrs"] = {k: _plain(v) for k, v in self.attrs.items()}
        return data


def _plain(value: object) -> object:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def _is_float(tensor: gs.Constant) -> bool:
    try:
        return np.dtype(tensor.dtype).kind == "f"
    except TypeError:  # an ONNX type numpy lacks (bfloat16...): graphsurgeon converts the values to judge
        return np.issubdtype(np.asarray(tensor.values).dtype, np.floating)


def _float_param_count(node: gs.Node) -> int:
    # Constant.shape and .dtype read the ONNX tensor's header: the weights' bytes are never loaded here.
    return sum(math.prod(t.shape) for t in node.inputs if isinstance(t, gs.Constant) and _is_float(t))


def _macs(node: gs.Node, shapes: Mapping[str, tuple[int, ...]]) -> int:
    out_shape = shapes.get(node.outputs[0].name) if node.outputs else None
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    if not isinstance(weight, gs.Constant) or out_shape is None:
        return 0
    w = weight.shape
    if node.op == "Conv":
        return int(math.prod(w) * math.prod(out_shape[2:]) * out_shape[0])
    if node.op == "ConvTranspose":
        in_shape = shapes.get(node.inputs[0].name)
        return int(math.prod(w) * math.prod(in_shape[2:]) * in_shape[0]) if in_shape else 0
    if node.op in ("Gemm", "MatMul") and len(w) == 2:
        return int(math.prod(out_shape[:-1]) * w[0] * w[1])
    return 0


def _ints(node: gs.Node, name: str) -> tuple[int, ...]:
    return tuple(int(v) for v in node.attrs.get(name, ()))


def describe_layers(graph: gs.Graph, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, LayerInfo]:
    layers: dict[str, LayerInfo] = {}
    for index, node in enumerate(graph.nodes):
        in_shape = shapes.get(node.inputs[0].name) if node.inputs and node.inputs[0].name else None
        out_shape = shapes.get(node.outputs[0].name) if node.outputs else None
        weight = node.inputs[1] if len(node.inputs) > 1 and isinstance(node.inputs[1], gs.Constant) else None
        groups = int(node.attrs.get("group", 1))
        in_channels = out_channels = 0
        if node.op == "Conv" and weight is not None:
            out_channels, in_channels = weight.shape[0], weight.shape[1] * groups
        elif node.op == "ConvTranspose" and weight is not None:
            in_channels, out_channels = weight.shape[0], weight.shape[1] * groups
        elif node.op == "Gemm" and weight is not None:
            k, n = weight.shape
            in_channels, out_channels = (n, k) if node.attrs.get("transB", 0) else (k, n)
        elif node.op == "MatMul" and weight is not None and len(weight.shape) == 2:
            in_channels, out_channels = weight.shape
        else:
            in_channels = in_shape[1] if in_shape and len(in_shape) > 1 else 0
            out_channels = out_shape[1] if out_shape and len(out_shape) > 1 else 0
        kernel = (
            tuple(weight.shape[2:])
            if node.op in ("Conv", "ConvTranspose") and weight is not None
            else ()
        )
        layers[node.name] = LayerInfo(
            name=node.name,
            op_type=node.op,
            topo_index=index,
            in_channels=int(in_channels),
            out_channels=int(out_channels),
            out_spatial=tuple(out_shape[2:]) if out_shape and len(out_shape) > 2 else (),
            macs=_macs(node, shapes),
            params=_float_param_count(node),
            kernel=tuple(int(k) for k in (_ints(node, "kernel_shape") or kernel)),
            stride=_ints(node, "strides"),
            pads=_ints(node, "pads"),
            dilations=_ints(node, "dilations"),
            groups=groups,
            attrs={k: _plain(v) for k, v in node.attrs.items()},
        )
    return layers


def build_layer_graph(
    graph: gs.Graph, layers: Mapping[str, LayerInfo], shapes: Mapping[str, tuple[int, ...]]
) -> nx.DiGraph:
    """A DiGraph of operators: node attributes are ``LayerInfo`` fields, edges carry tensor name and shape.

    networkx is imported here, not with the module: only the search's graph features need it."""
    import networkx as nx

    digraph = nx.DiGraph()
    for node in graph.nodes:
        digraph.add_node(node.name, **layers[node.name].as_dict())
    for node in graph.nodes:
        for tensor in node.outputs:
            for consumer in tensor.outputs:
                shape = shapes.get(tensor.name)
                digraph.add_edge(
                    node.name, consumer.name, tensor=tensor.name, shape=tuple(shape) if shape else None
                )
    return digraph
