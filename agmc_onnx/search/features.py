"""Inputs of the two state encoders: a PyG graph of real layer attributes (AGMC) and AMC's 10-feature table.

Both come from ``ModelAnalysis`` alone, so any ONNX model the channel engine reads can be searched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch_geometric.data import Data

from agmc_onnx.analysis import ModelAnalysis
from agmc_onnx.groups.find import ChannelGroup

__all__ = [
    "GraphFeatures",
    "OP_VOCAB",
    "build_graph_features",
    "rule_features",
    "search_order",
    "NODE_FEATURES",
]

# Op families the encoder tells apart; anything else is "other" (the last column).
OP_VOCAB: tuple[tuple[str, ...], ...] = (
    ("Conv", "ConvTranspose"),
    ("Gemm", "MatMul"),
    ("BatchNormalization", "InstanceNormalization", "LayerNormalization"),
    ("Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Silu", "Mul"),
    ("Add", "Sub", "Sum"),
    ("Concat", "Split", "Slice"),
    ("GlobalAveragePool", "AveragePool", "MaxPool", "GlobalMaxPool", "ReduceMean"),
    ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze"),
)
NODE_FEATURES = (
    [f"op_{family[0]}" for family in OP_VOCAB]
    + ["op_other", "depthwise", "kernel", "stride", "log_groups", "log_in_channels", "log_out_channels"]
    + ["log_spatial", "log_macs", "log_params", "topo_position"]
)


@dataclass(frozen=True)
class GraphFeatures:
    """The layer graph as PyG data plus, per searched group, the node indices its state pools over."""

    # x [n_nodes, len(NODE_FEATURES)], edge_index [2, n_edges] (both directions), edge_attr [n_edges, 2]
    data: Data
    node_names: tuple[str, ...]
    group_ids: tuple[str, ...]
    group_nodes: tuple[tuple[int, ...], ...]  # per group id, indices into node_names


def search_order(analysis: ModelAnalysis) -> tuple[ChannelGroup, ...]:
    """Prunable groups in the order the agent visits them: by their first producer's topological position."""
    layers = analysis.layers
    return tuple(
        sorted(analysis.prunable_groups, key=lambda g: (min(layers[p].topo_index for p in g.producers), g.id))
    )


def _op_one_hot(op_type: str) -> list[float]:
    row = [0.0] * (len(OP_VOCAB) + 1)
    for column, family in enumerate(OP_VOCAB):
        if op_type in family:
            row[column] = 1.0
            return row
    row[-1] = 1.0
    return row


def _raw_node_row(attrs: dict, n_nodes: int) -> list[float]:
    kernel = max(attrs.get("kernel") or (1,))
    stride = max(attrs.get("stride") or (1,))
    in_channels, groups = attrs.get("in_channels", 0), max(1, attrs.get("groups", 1))
    depthwise = float(attrs["op_type"] == "Conv" and groups > 1 and groups == in_channels)
    spatial = math.prod(attrs.get("out_spatial") or (1,))
    return _op_one_hot(attrs["op_type"]) + [
        depthwise,
        float(kernel),
        float(stride),
        math.log1p(groups),
        math.log1p(in_channels),
        math.log1p(attrs.get("out_channels", 0)),
        math.log1p(spatial),
        math.log1p(attrs.get("macs", 0)),
        math.log1p(attrs.get("params", 0)),
        attrs["topo_index"] / max(1, n_nodes - 1),
    ]


def _scale_columns(matrix: np.ndarray, first: int) -> np.ndarray:
    """Divide columns from ``first`` on by their maximum: every feature in [0, 1] (one-hots untouched)."""
    scaled = matrix.copy()
    peak = np.abs(scaled[:, first:]).max(axis=0)
    scaled[:, first:] /= np.where(peak > 0, peak, 1.0)
    return scaled


def build_graph_features(
    analysis: ModelAnalysis, groups: Sequence[ChannelGroup] | None = None
) -> GraphFeatures:
    """Node features from each layer's real attributes; edge features = log tensor size and direction."""
    groups = tuple(groups) if groups is not None else search_order(analysis)
    graph = analysis.layer_graph
    names = tuple(sorted(graph.nodes, key=lambda n: graph.nodes[n]["topo_index"]))
    index = {name: i for i, name in enumerate(names)}
    rows = np.array([_raw_node_row(graph.nodes[n], len(names)) for n in names], dtype=np.float64)
    x = _scale_columns(rows, first=len(OP_VOCAB) + 2)
    sources, targets, sizes = [], [], []
    for src, dst, attrs in graph.edges(data=True):
        shape = attrs.get("shape") or ()
        size = math.log1p(math.prod(d for d in shape if d and d > 0)) if shape else 0.0
        sources += [index[src], index[dst]]
        targets += [index[dst], index[src]]
        sizes += [(size, 1.0), (size, 0.0)]  # second column: 1 = along the data flow, 0 = against it
    edge_attr = np.array(sizes, dtype=np.float64).reshape(-1, 2)
    if len(edge_attr):
        edge_attr[:, 0] /= max(edge_attr[:, 0].max(), 1e-9)
    data = Data(
        x=torch.tensor(x, dtype=torch.float32),
        edge_index=torch.tensor([sources, targets], dtype=torch.long).reshape(2, -1),
        edge_attr=torch.tensor(edge_attr, dtype=torch.float32),
    )
    group_nodes = tuple(tuple(index[n] for n in g.nodes if n in index) or (0,) for g in groups)
    return GraphFeatures(data, names, tuple(g.id for g in groups), group_nodes)


def rule_features(analysis: ModelAnalysis, groups: Sequence[ChannelGroup] | None = None) -> np.ndarray:
    """AMC's static per-layer features for each group, min-max normalised per column.

    Columns: index, type (conv / depthwise / linear), in channels, out channels, stride, kernel, #params.
    The layer described is the group's first producer. The dynamic three (MACs reduced so far, MACs left,
    previous action) are appended by the environment at each step.
    """
    groups = tuple(groups) if groups is not None else search_order(analysis)
    rows = []
    for position, group in enumerate(groups):
        layer = analysis.layers[group.producers[0]]
        depthwise = layer.op_type == "Conv" and layer.groups > 1 and layer.groups == layer.in_channels
        kind = 1.0 if depthwise else (2.0 if layer.op_type in ("Gemm", "MatMul") else 0.0)
        rows.append(
            [
                float(position),
                kind,
                float(layer.in_channels),
                float(layer.out_channels),
                float(max(layer.stride or (1,))),
                float(max(layer.kernel or (1,))),
                float(sum(analysis.layers[p].params for p in group.producers)),
            ]
        )
    table = np.array(rows, dtype=np.float64)
    low, high = table.min(axis=0), table.max(axis=0)
    return (table - low) / np.where(high > low, high - low, 1.0)
