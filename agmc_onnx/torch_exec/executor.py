"""``OnnxModule``: an ``onnx.ModelProto`` executed node by node with torch ops, its weights trainable.

Every trainable float initializer becomes an ``nn.Parameter`` keyed 1:1 by its initializer name (made
safe for ``ParameterDict``; ``onnx_name_of`` maps back), BatchNormalization running statistics become
buffers, everything else stays a constant on the CPU. Shape arithmetic runs at run time on the CPU, so
any batch size works. Every node is checked against the op registry when the module is built.
"""

from __future__ import annotations

import graphlib
import heapq
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import onnx
import torch
from torch import nn

from agmc_onnx.errors import PreconditionError, UnsupportedOpError
from agmc_onnx.io import default_opset
from agmc_onnx.torch_exec.dtypes import tensor_from_proto
from agmc_onnx.torch_exec.initializers import InitializerRole, plan_initializers
from agmc_onnx.torch_exec.ops import DEFAULT_DOMAINS, build_registry
from agmc_onnx.torch_exec.registry import OpContext, OpFn, OpRegistry

__all__ = ["OnnxModule", "BeforeNode"]

BeforeNode = Callable[[str, list, Mapping[str, torch.Tensor]], "list | None"]


@dataclass(frozen=True)
class _Step:
    """One node, prepared once: its implementation, value names, attributes and contexts."""

    fn: OpFn
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict
    train_ctx: OpContext
    eval_ctx: OpContext
    release: tuple[str, ...]  # values no later node reads: dropped to free memory


def _node_label(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


def _convert_attributes(node: onnx.NodeProto, label: str) -> dict:
    attrs = {}
    for attr in node.attribute:
        if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise UnsupportedOpError(node.op_type, label, "control flow with subgraphs is not supported")
        value = onnx.helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, onnx.TensorProto):
            value = tensor_from_proto(value)
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode() for v in value]
        attrs[attr.name] = value
    if node.op_type == "Constant":  # every scalar/list form becomes one "value" tensor
        for key, dtype in (
            ("value_float", torch.float32),
            ("value_floats", torch.float32),
            ("value_int", torch.int64),
            ("value_ints", torch.int64),
        ):
            if key in attrs:
                attrs["value"] = torch.tensor(attrs.pop(key), dtype=dtype)
    return attrs


def _sorted_nodes(graph: onnx.GraphProto, known: set[str]) -> list[tuple[int, onnx.NodeProto]]:
    """Nodes in topological order (ONNX requires it, but not every producer obeys); among the nodes that
    are ready, the earliest in the file runs first, so a sorted graph keeps its order."""
    producer = {name: index for index, node in enumerate(graph.node) for name in node.output if name}
    sorter: graphlib.TopologicalSorter = graphlib.TopologicalSorter()
    for index, node in enumerate(graph.node):
        missing = [name for name in node.input if name and name not in known and name not in producer]
        if missing:
            raise PreconditionError(
                f"node '{_node_label(node, index)}' ({node.op_type}) reads {missing}, which no node, "
                "graph input or initializer provides"
            )
        sorter.add(index, *(producer[name] for name in node.input if name and name not in known))
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        index = exc.args[1][0]
        raise PreconditionError(
            f"node '{_node_label(graph.node[index], index)}' ({graph.node[index].op_type}) is on a cycle"
        ) from None
    ready: list[int] = []
    ordered: list[tuple[int, onnx.NodeProto]] = []
    while sorter.is_active():
        for index in sorter.get_ready():
            heapq.heappush(ready, index)
        index = heapq.heappop(ready)
        ordered.append((index, graph.node[index]))
        sorter.done(index)
    return ordered


def _unique_key(name: str, taken: set[str], holder: nn.Module) -> str:
    base = re.sub(r"\W", "_", name) or "value"
    key, suffix = base, 1
    while key in taken or hasattr(holder, key):
        key, suffix = f"{base}_{suffix}", suffix + 1
    taken.add(key)
    return key


class OnnxModule(nn.Module):
    """Runs an ONNX graph with torch; ``forward(*inputs)`` takes the graph inputs in order."""

    def __init__(self, model: onnx.ModelProto, *, registry: OpRegistry | None = None) -> None:
        super().__init__()
        graph = model.graph
        self.opset = default_opset(model)
        plan = plan_initializers(graph)
        self.weights = nn.ParameterDict()
        self.running_stats = nn.Module()
        self._roles: dict[str, InitializerRole] = dict(plan.roles)
        self._param_keys: dict[str, str] = {}  # ONNX initializer name -> ParameterDict key
        self._buffer_keys: dict[str, str] = {}  # ONNX initializer name -> running_stats buffer name
        self._constants: dict[str, torch.Tensor] = {}
        taken: set[str] = set()
        for proto in graph.initializer:
            tensor = tensor_from_proto(proto)
            role = plan.roles[proto.name]
            if role.trainable:
                key = _unique_key(proto.name, taken, self.weights)
                self.weights[key] = nn.Parameter(tensor)
                self._param_keys[proto.name] = key
            elif role is InitializerRole.RUNNING_STAT:
                key = _unique_key(proto.name, taken, self.running_stats)
                self.running_stats.register_buffer(key, tensor)
                self._buffer_keys[proto.name] = key
            else:
                self._constants[proto.name] = tensor
        initializer_names = {proto.name for proto in graph.initializer}
        self.input_names = tuple(v.name for v in graph.input if v.name not in initializer_names)
        self.output_names = tuple(v.name for v in graph.output)
        self._steps = self._compile(graph, registry or build_registry(), initializer_names)

    def _compile(self, graph: onnx.GraphProto, registry: OpRegistry, initializer_names: set[str]) -> tuple:
        ordered = _sorted_nodes(graph, set(self.input_names) | initializer_names)
        last_reader: dict[str, int] = {}
        for position, (_, node) in enumerate(ordered):
            for name in node.input:
                last_reader[name] = position
        produced_by_nodes = {name for _, node in ordered for name in node.output if name}
        keep = set(self.output_names)
        release_at: dict[int, list[str]] = {}
        for name, position in last_reader.items():
            if name in produced_by_nodes and name not in keep:
                release_at.setdefault(position, []).append(name)
        steps = []
        for position, (index, node) in enumerate(ordered):
            label = _node_label(node, index)
            if node.domain not in DEFAULT_DOMAINS:
                raise UnsupportedOpError(node.op_type, label, f"domain '{node.domain}' is not supported")
            if node.op_type not in registry:
                raise UnsupportedOpError(
                    node.op_type, label, "the torch executor has no implementation for it"
                )
            spec = registry[node.op_type]
            attrs = _convert_attributes(node, label)
            n_outputs = sum(1 for name in node.output if name)
            contexts = [OpContext(label, node.op_type, self.opset, mode, n_outputs) for mode in (True, False)]
            if spec.check is not None:
                spec.check(attrs, contexts[1])
            steps.append(
                _Step(
                    spec.fn,
                    tuple(node.input),
                    tuple(node.output),
                    attrs,
                    *contexts,
                    tuple(release_at.get(position, ())),
                )
            )
        return tuple(steps)

    def forward(self, *inputs: torch.Tensor):
        return self.run(inputs)

    def run(self, inputs: Sequence[torch.Tensor], before_node: BeforeNode | None = None):
        """``forward``, with an optional ``before_node(node_name, args, values) -> args | None`` called before
        each node (``values``: every tensor computed so far and still needed, by name); a list it returns
        replaces the node's arguments (a rewrite of weights mid-forward)."""
        if len(inputs) != len(self.input_names):
            raise ValueError(
                f"expected {len(self.input_names)} inputs {list(self.input_names)}, got {len(inputs)}"
            )
        values: dict[str, torch.Tensor] = dict(self._constants)
        values.update(self.onnx_state())
        values.update(zip(self.input_names, inputs))
        for step in self._steps:
            args = [values[name] if name else None for name in step.inputs]
            context = step.train_ctx if self.training else step.eval_ctx
            if before_node is not None:
                args = before_node(context.node_name, args, values) or args
            outputs = step.fn(args, step.attrs, context)
            for name, value in zip(step.outputs, outputs):
                if name:
                    values[name] = value
            for name in step.release:
                del values[name]
        results = tuple(values[name] for name in self.output_names)
        return results[0] if len(results) == 1 else results

    # --- the map between torch and ONNX names -------------------------------------------------

    def onnx_parameters(self) -> dict[str, nn.Parameter]:
        """Trainable parameters keyed by their exact ONNX initializer name."""
        return {name: self.weights[key] for name, key in self._param_keys.items()}

    def onnx_buffers(self) -> dict[str, torch.Tensor]:
        """BatchNormalization running statistics keyed by their exact ONNX initializer name."""
        return {name: getattr(self.running_stats, key) for name, key in self._buffer_keys.items()}

    def onnx_state(self) -> dict[str, torch.Tensor]:
        """Every value training can change (parameters and running statistics), by ONNX name."""
        return {**self.onnx_parameters(), **self.onnx_buffers()}

    def onnx_name_of(self, key: str) -> str:
        """The ONNX initializer name behind a ``weights`` or ``running_stats`` key."""
        for table in (self._param_keys, self._buffer_keys):
            for name, candidate in table.items():
                if candidate == key:
                    return name
        raise KeyError(key)

    @property
    def initializer_roles(self) -> Mapping[str, InitializerRole]:
        return dict(self._roles)

    def n_constants(self) -> int:
        return len(self._constants)
