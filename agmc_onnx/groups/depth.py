"""Depth: residual branches that can be deleted whole, and the channel groups that stand for them.

A *residual branch* is a set of operators whose only output is one input of a merge (``Add`` or
``Sum``) whose other input carries the same channels, and whose own inputs are all available without
it (ancestors of the other input, or graph inputs). Deleting the branch and bypassing the merge
computes exactly what the original computes with the branch's output zeroed.

A channel group is *removable* when every node it touches lies inside one branch: at zero width
that group disconnects the branch, so a keep ratio of 0 for it means "delete the branch". In a
CIFAR ResNet basic block (conv-bn-relu-conv-bn + skip) that is the block's inner group (the first
conv's output channels); the last conv's output belongs to the residual-stream group, which spans
every block of the stage and is never removable. When both inputs of a merge qualify (a ResNet
downsampling block: main branch and shortcut conv), only the one with more MACs is offered, so
that the merge always keeps one input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import onnx_graphsurgeon as gs

from agmc_onnx.errors import PlanError
from agmc_onnx.graph.layers import WEIGHTED_OPS, LayerInfo
from agmc_onnx.groups.find import ChannelGroup

__all__ = ["ResidualBranch", "DepthAnalysis", "find_residual_branches", "MERGE_OPS"]

MERGE_OPS = frozenset({"Add", "Sum"})


@dataclass(frozen=True)
class ResidualBranch:
    """Operators that can be deleted together, and the merge input they feed."""

    id: str
    merge: str  # the Add/Sum node whose input ``merge_input`` the branch produces
    merge_input: int
    output: str  # the tensor the branch hands to the merge
    nodes: tuple[str, ...]  # the branch's operators, in topological order
    groups: tuple[str, ...]  # channel groups confined to this branch (any of them at keep 0 removes it)
    macs: int  # MACs removed with the branch (its operators and a bypassed two-input merge)
    params: int
    merge_vanishes: bool  # a two-input merge disappears; a wider Sum only loses one input

    @property
    def n_operators(self) -> int:
        """Operators removed: the branch, and the merge when it vanishes."""
        return len(self.nodes) + int(self.merge_vanishes)

    def summary(self) -> dict:
        return {
            "id": self.id,
            "merge": self.merge,
            "groups": list(self.groups),
            "operators": self.n_operators,
            "nodes": list(self.nodes),
            "macs": self.macs,
            "params": self.params,
        }


@dataclass(frozen=True)
class DepthAnalysis:
    """Every removable residual branch, and why each other group cannot go to zero width."""

    branches: tuple[ResidualBranch, ...] = ()
    obstacles: Mapping[str, str] = field(default_factory=dict)  # group id -> why it is not removable

    def branch_of(self, group_id: str) -> ResidualBranch | None:
        for branch in self.branches:
            if group_id in branch.groups:
                return branch
        return None

    def branch(self, branch_id: str) -> ResidualBranch:
        for branch in self.branches:
            if branch.id == branch_id:
                return branch
        raise PlanError(f"unknown residual branch '{branch_id}'")

    @property
    def removable_groups(self) -> tuple[str, ...]:
        return tuple(g for branch in self.branches for g in branch.groups)

    def require_removable(self, group: ChannelGroup) -> ResidualBranch:
        """The branch a keep ratio of 0 for ``group`` deletes; ``PlanError`` saying why when there is none."""
        branch = self.branch_of(group.id)
        if branch is None:
            why = self.obstacles.get(group.id, "it is not confined to a residual branch")
            raise PlanError(
                f"group '{group.id}' ({group.name}) cannot have keep ratio 0: {why}; "
                "only a group inside a residual branch can be removed (see `agmc-onnx inspect`)"
            )
        return branch


@dataclass(frozen=True)
class _GraphIndex:
    producer: Mapping[str, gs.Node]
    consumers: Mapping[str, list[gs.Node]]
    order: Mapping[str, int]
    inputs: frozenset[str]
    outputs: frozenset[str]
    predecessors: Mapping[str, list[str]]  # operator name -> the operators whose outputs it reads


def _index(graph: gs.Graph) -> _GraphIndex:
    producer: dict[str, gs.Node] = {}
    consumers: dict[str, list[gs.Node]] = {}
    predecessors: dict[str, list[str]] = {node.name: [] for node in graph.nodes}
    for node in graph.nodes:
        for tensor in node.outputs:
            producer[tensor.name] = node
    for node in graph.nodes:
        for tensor in node.inputs:
            if isinstance(tensor, gs.Variable) and tensor.name:
                consumers.setdefault(tensor.name, []).append(node)
                if tensor.name in producer:
                    predecessors[node.name].append(producer[tensor.name].name)
    return _GraphIndex(
        producer=producer,
        consumers=consumers,
        order={node.name: i for i, node in enumerate(graph.nodes)},
        inputs=frozenset(t.name for t in graph.inputs),
        outputs=frozenset(t.name for t in graph.outputs),
        predecessors=predecessors,
    )


def _with_ancestors(name: str, graph: _GraphIndex) -> set[str]:
    """``name`` and every operator it depends on."""
    found, stack = {name}, [name]
    while stack:
        for source in graph.predecessors[stack.pop()]:
            if source not in found:
                found.add(source)
                stack.append(source)
    return found


def _variable_inputs(node: gs.Node) -> list[tuple[int, gs.Tensor]]:
    return [(i, t) for i, t in enumerate(node.inputs) if isinstance(t, gs.Variable) and t.name]


def _trace_branch(merge: gs.Node, index: int, graph: _GraphIndex) -> dict[str, gs.Node] | None:
    """The operators that only feed input ``index`` of ``merge``, or None when that input is no branch."""
    out = merge.inputs[index]
    others = [t for i, t in _variable_inputs(merge) if i != index]
    available_nodes: set[str] = set()
    for tensor in others:
        source = graph.producer.get(tensor.name)
        if source is not None:
            available_nodes |= _with_ancestors(source.name, graph)
    start = graph.producer.get(out.name)
    if start is None or start.name in available_nodes:
        return None
    branch: dict[str, gs.Node] = {}
    stack = [start]
    while stack:
        node = stack.pop()
        if node.name in branch:
            continue
        branch[node.name] = node
        for tensor in node.inputs:
            if not isinstance(tensor, gs.Variable) or not tensor.name:
                continue
            source = graph.producer.get(tensor.name)
            if source is not None and source.name not in available_nodes:
                stack.append(source)
    if not _closed(branch, merge, out.name, graph) or not any(n.op in WEIGHTED_OPS for n in branch.values()):
        return None
    return branch


def _closed(branch: Mapping[str, gs.Node], merge: gs.Node, out: str, graph: _GraphIndex) -> bool:
    """Nothing outside the branch reads its tensors, except the merge reading ``out`` once."""
    if sum(1 for t in merge.inputs if t.name == out) != 1:
        return False
    for node in branch.values():
        for tensor in node.outputs:
            if tensor.name in graph.outputs:
                return False
            for reader in graph.consumers.get(tensor.name, []):
                if reader.name not in branch and not (reader is merge and tensor.name == out):
                    return False
    return True


def _same_shapes(merge: gs.Node, shapes: Mapping[str, tuple[int, ...]]) -> bool:
    out_shape = shapes.get(merge.outputs[0].name)
    inputs = _variable_inputs(merge)
    return (
        out_shape is not None
        and len(inputs) == len(merge.inputs) >= 2
        and all(shapes.get(t.name) == out_shape for _, t in inputs)
    )


def _merge_candidates(
    merge: gs.Node, graph: _GraphIndex, layers: Mapping[str, LayerInfo]
) -> list[tuple[int, dict[str, gs.Node], int]]:
    found = []
    for index, _ in _variable_inputs(merge):
        branch = _trace_branch(merge, index, graph)
        if branch is not None:
            found.append((index, branch, sum(layers[n].macs for n in branch)))
    if found and len(found) == len(merge.inputs):  # every input is a branch: the cheapest one stays
        found.remove(min(found, key=lambda item: (item[2], -item[0])))
    return found


def find_residual_branches(
    graph: gs.Graph,
    shapes: Mapping[str, tuple[int, ...]],
    layers: Mapping[str, LayerInfo],
    groups: Sequence[ChannelGroup],
) -> DepthAnalysis:
    """Find every removable residual branch of ``graph`` and the groups that stand for each."""
    index = _index(graph)
    found = []
    for merge in graph.nodes:
        if merge.op not in MERGE_OPS or not _same_shapes(merge, shapes):
            continue
        for input_index, branch, macs in _merge_candidates(merge, index, layers):
            found.append((merge, input_index, branch, macs))
    owner: dict[str, int] = {}  # group id -> the smallest branch confining it
    for position, (_, _, branch, _) in enumerate(found):
        for group in groups:
            if group.nodes and set(group.nodes) <= branch.keys():
                if group.id not in owner or len(found[owner[group.id]][2]) > len(branch):
                    owner[group.id] = position
    branches = []
    for position, (merge, input_index, branch, macs) in enumerate(found):
        vanishes = len(merge.inputs) == 2
        nodes = tuple(sorted(branch, key=index.order.__getitem__))
        branches.append(
            ResidualBranch(
                id=f"b{position}",
                merge=merge.name,
                merge_input=input_index,
                output=merge.inputs[input_index].name,
                nodes=nodes,
                groups=tuple(g.id for g in groups if owner.get(g.id) == position),
                macs=macs + (layers[merge.name].macs if vanishes else 0),
                params=sum(layers[n].params for n in nodes),
                merge_vanishes=vanishes,
            )
        )
    obstacles = {g.id: _obstacle(g, layers) for g in groups if g.id not in owner}
    return DepthAnalysis(tuple(branches), obstacles)


def _obstacle(group: ChannelGroup, layers: Mapping[str, LayerInfo]) -> str:
    """Why a group's channels cannot all go: the first structural reason found, in plain words."""
    for name in group.nodes:
        if layers[name].op_type == "Concat":
            return f"it feeds Concat '{name}', whose other inputs would change position"
    for name in group.nodes:
        if layers[name].op_type in MERGE_OPS:
            return (
                f"it is tied to the residual stream through {layers[name].op_type} '{name}', "
                "so every block on that stream reads it"
            )
    if group.pin_reason is not None:
        return f"it is pinned ({group.pin_reason})"
    return "no residual merge bypasses it: it is the only path from the input to the output"
