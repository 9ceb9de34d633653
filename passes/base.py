"""The shape of a pass: ``requires`` → ``call`` → ``ensures``, run by the framework.

A ``GraphPass`` mutates the ``gs.Graph`` it is given; a ``ModelPass`` works on a whole ``ModelProto``
(what onnx's own tools take: shape inference, the checker) and returns a new one. ``PassManager`` is
functional at its boundary: it takes a ``ModelProto``, converts between the two forms only where the
kind of pass changes, and returns a new ``ModelProto``, so the caller's model is never changed.
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

__all__ = ["GraphPass", "ModelPass", "PassResult", "ModelPassResult", "PassManager", "run_passes", "export_model"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PassResult:
    graph: gs.Graph
    modified: bool
    stats: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelPassResult:
    model: onnx.ModelProto
    modified: bool
    stats: Mapping[str, int] = field(default_factory=dict)


class _Pass(abc.ABC):
    """The contract both kinds of pass share; configuration is immutable data given to ``__init__``."""

    @property
    def name(self) -> str:
        return type(self).__name__

    def requires(self, target) -> None:  # noqa: B027 - optional hook
        """Raise ``PreconditionError`` when the pass cannot run on ``target``."""

    @abc.abstractmethod
    def call(self, target):
        """Do the pass's work and say what changed."""

    def ensures(self, target) -> None:  # noqa: B027 - optional hook
        """Raise ``PostconditionError`` when the result breaks the pass's guarantee."""

    @staticmethod
    @abc.abstractmethod
    def _output(result):
        """What ``ensures`` checks: the result's graph or model."""

    def __call__(self, target):
        self.requires(target)
        try:
            result = self.call(target)
        except AgmcError:
            raise
        except Exception as exc:  # a stray bug inside a pass: name the pass, keep the cause
            raise PostconditionError(f"{self.name} failed: {type(exc).__name__}: {exc}") from exc
        self.ensures(self._output(result))
        return result


class GraphPass(_Pass):
    """A graph rewrite: ``call(graph)`` mutates the ``gs.Graph`` and returns a ``PassResult``."""

    @staticmethod
    def _output(result: PassResult) -> gs.Graph:
        return result.graph


class ModelPass(_Pass):
    """A pass over a whole model: ``call(model)`` returns a ``ModelPassResult``; it may change ``model`` in
    place (``PassManager`` never hands it the caller's model)."""

    @staticmethod
    def _output(result: ModelPassResult) -> onnx.ModelProto:
        return result.model


class PassManager:
    """Runs passes in order on a copy of a model and reports per-pass statistics."""

    def __init__(self, passes: Sequence[GraphPass | ModelPass]) -> None:
        self.passes = tuple(passes)

    def run(self, model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, Mapping[str, int]]]:
        current: gs.Graph | onnx.ModelProto = model
        stats: dict[str, Mapping[str, int]] = {}
        done: list[str] = []
        for each in self.passes:
            if isinstance(each, GraphPass) and not isinstance(current, gs.Graph):
                current = gs.import_onnx(current)
            elif isinstance(each, ModelPass) and isinstance(current, gs.Graph):
                current = _export(current, model)
            elif isinstance(each, ModelPass) and current is model:  # a model pass may edit what it is given
                current = onnx.ModelProto()
                current.CopyFrom(model)
            try:
                result = each(current)
            except (PreconditionError, PostconditionError) as exc:
                history = f" (after {', '.join(done)})" if done else ""
                raise type(exc)(f"{exc}{history}") from exc
            current = each._output(result)
            stats[each.name] = dict(result.stats)
            done.append(each.name)
            log.debug("%s: modified=%s %s", each.name, result.modified, dict(result.stats))
        if isinstance(current, gs.Graph):
            current = _export(current, model)
        elif current is model:
            current = onnx.ModelProto()
            current.CopyFrom(model)
        return current, stats


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


def _export(graph: gs.Graph, source: onnx.ModelProto) -> onnx.ModelProto:
    # IR < 4 files list every initializer as a graph input; graphsurgeon's export drops them.
    return list_initializers_as_inputs(export_model(graph, source))


def run_passes(model: onnx.ModelProto, passes: Sequence[GraphPass | ModelPass]) -> onnx.ModelProto:
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
