"""``reconstruction`` importance, greedy and ThiNet-style: drop first the units whose removal the next
layers miss least.

On sampled positions of calibration images, every unit's *contribution* to each consumer's output is
measured (its input slice times the consumer's weights, from onnxruntime activations of the original).
Removing a set of units takes away the sum of their contributions; the greedy order removes, one at a
time, the unit that keeps that summed loss smallest (so units that cancel each other or that others
duplicate go early, which a per-unit norm cannot see). A unit's score is its place in that order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import torch
from onnx import helper

from agmc_onnx.analysis import ModelAnalysis
from agmc_onnx.cost.session import create_session
from agmc_onnx.groups.find import ChannelGroup
from agmc_onnx.groups.flow import SliceConstant
from agmc_onnx.importance import Importance
from agmc_onnx.reconstruct.consumers import LayerGeometry, layer_geometry, with_outputs

__all__ = ["ReconstructionImportance"]


class ReconstructionImportance(Importance):
    """Greedy removal order by the consumers' output loss on ``batches`` (model inputs)."""

    name = "reconstruction"

    def __init__(self, batches: Sequence[np.ndarray], positions_per_image: int = 2, seed: int = 0) -> None:
        self.batches = tuple(batches)
        self.positions_per_image = positions_per_image
        self.seed = seed
        self._cache: tuple[ModelAnalysis, dict[str, torch.Tensor]] | None = None

    def __call__(self, analysis: ModelAnalysis, group: ChannelGroup) -> np.ndarray:
        readers = _readers(analysis, group)
        if not readers:
            return np.zeros(group.n_units)
        rows = self._rows(analysis, readers)
        unit_of = {int(r): i for i, r in enumerate(group.unit_roots.tolist())}
        parts = [_unit_contributions(analysis, node, tensor, rows[node], unit_of, group.n_units) for node, tensor in readers]
        return _greedy_order_scores([p for p in parts if p is not None], group.n_units)

    def _rows(self, analysis: ModelAnalysis, readers) -> dict[str, torch.Tensor]:
        """Input rows (patches) of every reader layer of the model, computed once per analysis."""
        if self._cache is None or self._cache[0] is not analysis:
            self._cache = (analysis, _all_reader_rows(analysis, self.batches, self.positions_per_image, self.seed))
        return self._cache[1]


def _readers(analysis: ModelAnalysis, group: ChannelGroup) -> list[tuple[str, str]]:
    """(node, input tensor) of every weighted layer that reads the group's channels."""
    units = set(group.unit_roots.tolist())
    nodes = {node.name: node for node in analysis.model.graph.node}
    found = {}
    for edit in analysis.flow.edits:
        if not (isinstance(edit, SliceConstant) and edit.consumes and edit.is_weight):
            continue
        node = nodes[edit.node]
        if node.op_type not in ("Conv", "Gemm", "MatMul") or node.input[0] != edit.tensor:
            continue
        roots = analysis.flow.roots(analysis.flow.tensors[edit.tensor].atoms)
        if units.intersection(roots.tolist()):
            found[node.name] = edit.tensor
    return sorted(found.items())


def _geometry(analysis: ModelAnalysis, node: onnx.NodeProto) -> LayerGeometry | None:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
    return layer_geometry(node.op_type, attrs, tuple(analysis.shapes.get(node.input[0], ())))


def _all_reader_rows(analysis, batches, per_image, seed) -> dict[str, torch.Tensor]:
    nodes = [n for n in analysis.model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    nodes = [n for n in nodes if _geometry(analysis, n) is not None and n.input[0] in analysis.flow.tensors]
    inputs = list(dict.fromkeys(n.input[0] for n in nodes))
    graph_inputs = {v.name for v in analysis.model.graph.input}
    fetch = [name for name in inputs if name not in graph_inputs]
    session = create_session(with_outputs(analysis.model, fetch)) if fetch else None
    input_name = analysis.model.graph.input[0].name
    rng = np.random.default_rng(seed)
    parts: dict[str, list[torch.Tensor]] = {n.name: [] for n in nodes}
    for batch in batches:
        values = dict(zip(fetch, session.run(fetch, {input_name: batch}))) if session else {}
        values[input_name] = batch
        for node in nodes:
            geometry = _geometry(analysis, node)
            x = torch.from_numpy(values[node.input[0]])
            out_shape = tuple(analysis.shapes.get(node.output[0], ()))
            positions = geometry.positions(out_shape)
            take = min(per_image, positions)
            places = torch.from_numpy(np.argsort(rng.random((len(batch), positions)), axis=1)[:, :take].reshape(-1))
            images = torch.arange(len(batch)).repeat_interleave(take)
            parts[node.name].append(geometry.rows(x, images, places))
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


def _unit_contributions(analysis, node_name, tensor, rows, unit_of, n_units) -> torch.Tensor | None:
    """[M, units, outputs]: each unit's share of the layer's output on the sampled rows, scaled so that
    every layer's output has unit energy (one layer does not drown the others)."""
    node = next(n for n in analysis.model.graph.node if n.name == node_name)
    weight = torch.from_numpy(onnx.numpy_helper.to_array(next(
        i for i in analysis.model.graph.initializer if i.name == node.input[1]
    )).astype(np.float32))
    geometry = _geometry(analysis, node)
    roots = analysis.flow.roots(analysis.flow.tensors[tensor].atoms).tolist()
    if geometry.op_type == "Conv":
        if geometry.groups != 1:
            return None  # a grouped/depthwise reader keeps each channel's output to itself: nothing to trade
        per_channel = rows.reshape(rows.shape[0], len(roots), -1)  # [M, C, kk]
        contribution = torch.einsum("mck,ock->mco", per_channel, weight.reshape(weight.shape[0], len(roots), -1))
    else:
        as_out_in = weight.T if geometry.weight_transposed else weight
        contribution = rows.unsqueeze(2) * as_out_in.T.unsqueeze(0)  # [M, C, O]
    index = torch.tensor([unit_of.get(int(r), -1) for r in roots])
    keep = index >= 0
    summed = torch.zeros(rows.shape[0], n_units, contribution.shape[2])
    summed.index_add_(1, index[keep], contribution[:, keep])
    energy = contribution.sum(dim=1).pow(2).mean().clamp_min(1e-12)
    return summed / energy.sqrt()


def _greedy_order_scores(contributions: list[torch.Tensor], n_units: int) -> np.ndarray:
    """Remove, one at a time, the unit that keeps the removed units' summed contribution smallest
    (summed over the reader layers, each ``[rows, units, outputs]``)."""
    if not contributions:
        return np.zeros(n_units)
    zs = [z.to(torch.float64) for z in contributions]
    norms = sum(z.pow(2).sum(dim=(0, 2)) for z in zs)
    removed = [torch.zeros(z.shape[0], z.shape[2], dtype=torch.float64) for z in zs]
    scores = np.full(n_units, float(n_units))
    alive = torch.ones(n_units, dtype=torch.bool)
    for step in range(n_units - 1):
        cost = norms + sum(2.0 * torch.einsum("mo,muo->u", s, z) for s, z in zip(removed, zs))
        cost[~alive] = float("inf")
        unit = int(torch.argmin(cost))
        scores[unit] = step
        alive[unit] = False
        for s, z in zip(removed, zs):
            s += z[:, unit]
    return scores
