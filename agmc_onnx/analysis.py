"""One call from a model to everything later stages need: prepared graph, shapes, layers, groups."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from agmc_onnx.graph.layers import WEIGHTED_OPS, LayerInfo, build_layer_graph, describe_layers
from agmc_onnx.graph.prepare import infer_static_shapes, prepare_model
from agmc_onnx.groups.depth import DepthAnalysis, find_residual_branches
from agmc_onnx.groups.find import ChannelGroup, build_groups, walk_channel_flow
from agmc_onnx.groups.flow import ChannelFlow

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["ModelAnalysis", "analyze_model"]


@dataclass(frozen=True)
class ModelAnalysis:
    model: onnx.ModelProto  # the prepared model every rewrite applies to
    shapes: Mapping[str, tuple[int, ...]]
    layers: Mapping[str, LayerInfo]
    flow: ChannelFlow
    groups: tuple[ChannelGroup, ...]
    seconds: float
    depth: DepthAnalysis = DepthAnalysis()  # removable residual branches

    @cached_property
    def layer_graph(self) -> nx.DiGraph:
        """The operators as a networkx DiGraph (``build_layer_graph``), built when first asked for: only the
        search's graph features read it, and networkx costs a third of a second to import."""
        return build_layer_graph(gs.import_onnx(self.model), self.layers, self.shapes)

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers.values())

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers.values())

    @property
    def prunable_groups(self) -> tuple[ChannelGroup, ...]:
        return tuple(g for g in self.groups if g.prunable)

    @property
    def prunable_macs(self) -> int:
        """MACs of weighted layers with at least one prunable group on an input or an output."""
        names = {n for g in self.prunable_groups for n in g.nodes}
        return sum(self.layers[n].macs for n in names if self.layers[n].op_type in WEIGHTED_OPS)

    def group(self, key: str) -> ChannelGroup:
        for group in self.groups:
            if key in (group.id, group.name):
                return group
        raise KeyError(key)

    def kept_positions(self, dropped_roots: set[int]) -> dict[str, np.ndarray]:
        """For every channel-carrying tensor that loses channels, the positions that stay."""
        kept: dict[str, np.ndarray] = {}
        if not dropped_roots:
            return kept
        dropped = np.zeros(len(self.flow.parent), dtype=bool)  # indexed by atom: one lookup per position
        dropped[np.fromiter(dropped_roots, dtype=np.int64, count=len(dropped_roots))] = True
        for name, info in self.flow.tensors.items():
            mask = ~dropped[self.flow.roots(info.atoms)]
            if not mask.all():
                kept[name] = np.flatnonzero(mask)
        return kept


def analyze_model(model: onnx.ModelProto) -> ModelAnalysis:
    """Prepare ``model`` (a copy unless it needs no change), infer shapes, describe layers and find channel groups."""
    start = time.perf_counter()
    prepared = prepare_model(model)
    shapes = infer_static_shapes(prepared, batch_size=1)
    shapes_alt = infer_static_shapes(prepared, batch_size=2)
    graph = gs.import_onnx(prepared)
    layers = describe_layers(graph, shapes)
    flow = walk_channel_flow(graph, shapes, shapes_alt)
    groups = build_groups(flow, graph, layers)
    return ModelAnalysis(
        model=prepared,
        shapes=shapes,
        layers=layers,
        flow=flow,
        groups=groups,
        seconds=time.perf_counter() - start,
        depth=find_residual_branches(graph, shapes, layers, groups),
    )
