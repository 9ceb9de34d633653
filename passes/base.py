"""The shape of a graph-rewrite pass: ``requires`` → ``call`` → ``ensures``, run by the framework.

A pass mutates the ``gs.Graph`` it is given. ``PassManager`` is functional at its boundary: it takes a
``ModelProto``, imports a fresh graph, runs the passes and returns a new ``ModelProto``, so the
caller's model is never changed.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import onnx
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.exporters.onnx_exporter import OnnxExporter
from onnx_graphsurgeon.ir.tensor import SparseValues

from agmc_onnx.errors import AgmcError, PostconditionError, PreconditionError
from agmc_onnx.graph.versions import list_initializers_as_inputs

__all__ = ["GraphPass", "PassResult", "PassManager", "run_passes", "export_model"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PassResult:
    graph: gs.Graph
    modified: bool
    stats: Mapping[str, int] = field(default_factory=dict)


class GraphPass(abc.ABC):
    """A graph rewrite with an explicit contract. Configuration is immutable data given to ``__init__``."""

    @property
    def name(self) -> str:
        return type(self).__name__

    def requires(self, graph: gs.Graph) -> None:  # noqa: B027 - optional hook
        """Raise ``PreconditionError`` when the pass cannot run on ``graph``."""

    @abc.abstractmethod
    def call(self, graph: gs.Graph) -> PassResult:
        """Mutate ``graph`` and say what changed."""

    def ensures(self, graph: gs.Graph) -> None:  # noqa: B027 - optional hook
        """Raise ``PostconditionError`` when the result breaks the pass's guarantee."""

    def __call__(self, graph: gs.Graph) -> PassResult:
        self.requires(graph)
        try:
            result = self.call(graph)
        except AgmcError:
            raise
        except Exception as exc:  # a stray bug inside a pass: name the pass, keep the cause
            raise PostconditionError(f"{self.name} failed: {type(exc).__name__}: {exc}") from exc
        self.ensures(result.graph)
        return result


class PassManager:
    """Runs passes in order on a copy of a model and reports per-pass statistics."""

    def __init__(self, passes: Sequence[GraphPass]) -> None:
        self.passes = tuple(passes)

    def run(self, model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, Mapping[str, int]]]:
        graph = gs.import_onnx(model)
        stats: dict[str, Mapping[str, int]] = {}
        done: list[str] = []
        for graph_pass in self.passes:
            try:
                result = graph_pass(graph)
            except (PreconditionError, PostconditionError) as exc:
                history = f" (after {', '.join(done)})" if done else ""
                raise type(exc)(f"{exc}{history}") from exc
            graph = result.graph
            stats[graph_pass.name] = dict(result.stats)
            done.append(graph_pass.name)
            log.debug("%s: modified=%s %s", graph_pass.name, result.modified, dict(result.stats))
        return list_initializers_as_inputs(export_model(graph, model)), stats


def export_model(graph: gs.Graph, source: onnx.ModelProto) -> onnx.ModelProto:
    """``graph`` as a new model with ``source``'s opsets and metadata, each weight copied once.

    ``gs.export_onnx`` builds a GraphProto and then copies it into a ModelProto: two copies of every
    weight at the peak. This writes graphsurgeon's exported pieces straight into the model's graph.
    """
    model = onnx.ModelProto()
    target = model.graph
    target.name = graph.name or ""
    if graph.doc_string:
        target.doc_string = graph.doc_string
    target.node.extend(OnnxExporter.export_node(node) for node in graph.nodes)
    target.input.extend(OnnxExporter.export_value_info_proto(t, do_type_check=False) for t in graph.inputs)
    target.output.extend(OnnxExporter.export_value_info_proto(t, do_type_check=False) for t in graph.outputs)
    boundary = {t.name for t in [*graph.inputs, *graph.outputs]}
    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Constant):
            if isinstance(tensor._values, SparseValues):
                target.sparse_initializer.append(OnnxExporter.export_sparse_tensor_proto(tensor))
            else:
                target.initializer.append(OnnxExporter.export_tensor_proto(tensor))
        elif tensor.name not in boundary and (tensor.dtype is not None or tensor.shape is not None):
            target.value_info.append(OnnxExporter.export_value_info_proto(tensor, do_type_check=False))
    model.functions.extend(OnnxExporter.export_function(function) for function in graph.functions)
    _copy_model_fields(source, model)
    return model


def run_passes(model: onnx.ModelProto, passes: Sequence[GraphPass]) -> onnx.ModelProto:
    """Shorthand for ``PassManager(passes).run(model)[0]``."""
    return PassManager(passes).run(model)[0]


def _copy_model_fields(source: onnx.ModelProto, target: onnx.ModelProto) -> None:
    """Keep producer, opsets and metadata that graphsurgeon's exporter does not carry over."""
    target.ir_version = source.ir_version
    target.producer_name = source.producer_name or "agmc-onnx"
    target.producer_version = source.producer_version
    target.domain = source.domain
    target.model_version = source.model_version
    target.doc_string = source.doc_string
    del target.opset_import[:]
    target.opset_import.extend(source.opset_import)
    del target.metadata_props[:]
    target.metadata_props.extend(source.metadata_props)
