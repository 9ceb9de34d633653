"""Walk the graph once with the channel-flow rules, then gather coupled channels into groups."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from agmc_onnx.graph.layers import WEIGHTED_OPS, LayerInfo
from agmc_onnx.groups.context import RuleContext
from agmc_onnx.groups.flow import ChannelFlow, SliceConstant
from agmc_onnx.groups.registry import rule_for

__all__ = ["ChannelGroup", "walk_channel_flow", "build_groups"]


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that must be pruned together, with what they touch and how much each one matters.

    The group's selectable items are *units*: a unit is one channel, or a whole conv group where a
    grouped convolution forces its channels to go together; ``unit_roots[i]`` is unit i's channel root.
    How much each unit matters is not the group's business: see ``agmc_onnx.importance``.
    """

    id: str
    name: str
    n_units: int
    n_channels: int  # channels of the first producer's output
    unit_roots: np.ndarray = field(repr=False, compare=False)
    producers: tuple[str, ...] = ()
    consumers: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    macs: int = 0
    params: int = 0
    pin_reason: str | None = None
    unit_width: int = 1  # positions per unit in the first producer's output
    fixed_units: int = 0  # units always kept (not in ``unit_roots``): a grouped Conv cannot balance them

    @property
    def prunable(self) -> bool:
        return self.pin_reason is None and self.n_units > 1

    @property
    def status(self) -> str:
        if self.pin_reason is not None:
            return f"pinned: {self.pin_reason}"
        if self.n_units <= 1:
            return "pinned: a single unit"
        return f"prunable, {self.fixed_units} units always kept" if self.fixed_units else "prunable"

    def summary(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "n_channels": self.n_channels,
            "n_units": self.n_units,
            "unit_width": self.unit_width,
            "fixed_units": self.fixed_units,
            "prunable": self.prunable,
            "status": self.status,
            "producers": list(self.producers),
            "consumers": list(self.consumers),
            "macs": self.macs,
            "params": self.params,
        }


def walk_channel_flow(
    graph: gs.Graph, shapes: Mapping[str, tuple[int, ...]], shapes_alt: Mapping[str, tuple[int, ...]]
) -> ChannelFlow:
    flow = ChannelFlow()
    ctx = RuleContext(flow, shapes, shapes_alt)
    for tensor in graph.inputs:
        shape = shapes.get(tensor.name)
        # Integer and boolean inputs (token ids, masks) carry positions, not channels.
        is_float = tensor.dtype is None or np.issubdtype(np.dtype(tensor.dtype), np.floating)
        if shape is not None and len(shape) >= 2 and is_float:
            ctx.set(tensor, 1, flow.new_atoms(shape[1], f"graph input '{tensor.name}'"))
    for node in graph.nodes:
        rule_for(node)(node, ctx)
        _ensure_followed(node, ctx)
    for tensor in graph.outputs:
        flow.pin_tensor(tensor.name, f"graph output '{tensor.name}'")
    return flow


def _ensure_followed(node: gs.Node, ctx: RuleContext) -> None:
    """Safety net: channels that enter a node and leave by no output must never be pruned."""
    if node.op in _SHAPE_READERS:
        return
    entered = any(t.name and ctx.info(t) is not None for t in node.inputs)
    left = any(ctx.info(t) is not None for t in node.outputs)
    if entered and not left:
        ctx.barrier(node, f"{node.op} '{node.name}' drops its channels")


_SHAPE_READERS = frozenset({"Shape", "Size"})


def _group_producers(flow: ChannelFlow) -> tuple[dict[int, int], list[list[str]]]:
    """Producers whose output channels are tied (in any position) belong to one group.

    Groups are numbered by their first producer in the flow's order.
    """
    names = list(flow.producers)
    tied = list(range(len(names)))  # union-find over producer indices

    def find(index: int) -> int:
        while tied[index] != index:
            tied[index] = index = tied[tied[index]]  # path halving
        return index

    root_owner: dict[int, int] = {}
    for index, producer in enumerate(names):
        roots = np.unique(flow.roots(flow.tensors[flow.producers[producer]].atoms)).tolist()
        for owner in {root_owner.setdefault(root, index) for root in roots} - {index}:
            tied[find(owner)] = find(index)
    members: dict[int, list[int]] = {}
    for index in range(len(names)):
        members.setdefault(find(index), []).append(index)
    ordered = sorted(members.values())  # each list ascends, so this sorts by first producer
    group_of = {index: number for number, indices in enumerate(ordered) for index in indices}
    root_group = {root: group_of[owner] for root, owner in root_owner.items()}
    return root_group, [[names[i] for i in indices] for indices in ordered]


def build_groups(flow: ChannelFlow, graph: gs.Graph, layers: Mapping[str, LayerInfo]) -> tuple[ChannelGroup, ...]:
    root_group, producer_lists = _group_producers(flow)
    tensor_roots = {name: flow.roots(info.atoms) for name, info in flow.tensors.items()}
    nodes_of: list[list[str]] = [[] for _ in producer_lists]
    for node in graph.nodes:
        touched = set()
        for tensor in [*node.inputs, *node.outputs]:
            roots = tensor_roots.get(tensor.name)
            if roots is not None:
                touched.update(root_group[r] for r in np.unique(roots).tolist() if r in root_group)
        for group_index in touched:
            nodes_of[group_index].append(node.name)
    consumers_of: list[set[str]] = [set() for _ in producer_lists]
    for edit in flow.edits:
        if isinstance(edit, SliceConstant) and edit.consumes:
            for r in np.unique(tensor_roots[edit.tensor]).tolist():
                if r in root_group:
                    consumers_of[root_group[r]].add(edit.node)
    groups = []
    for index, producers in enumerate(producer_lists):
        primary = tensor_roots[flow.producers[producers[0]]]
        all_units = list(dict.fromkeys(r for p in producers for r in tensor_roots[flow.producers[p]].tolist()))
        units = [u for u in all_units if u not in flow.keep_reasons]  # the others are always kept
        units_array = np.asarray(units, dtype=np.int64)
        reasons = [flow.pin_reasons[u] for u in all_units if u in flow.pin_reasons]
        if not units:  # every unit is always kept
            reason = flow.keep_reasons[all_units[0]]
            reasons.append(f"a single unit, always kept ({reason})" if len(all_units) == 1 else reason)
        touched = nodes_of[index]
        groups.append(
            ChannelGroup(
                id=f"g{index}",
                name=producers[0],
                n_units=len(units),
                n_channels=len(primary),
                unit_roots=units_array,
                producers=tuple(producers),
                consumers=tuple(sorted(consumers_of[index], key=lambda n: layers[n].topo_index)),
                nodes=tuple(touched),
                macs=sum(layers[n].macs for n in touched if layers[n].op_type in WEIGHTED_OPS),
                params=sum(layers[n].params for n in touched),
                pin_reason=reasons[0] if reasons else None,
                unit_width=max(1, len(primary) // max(1, len(np.unique(primary)))),
                fixed_units=len(all_units) - len(units),
            )
        )
    return tuple(groups)
