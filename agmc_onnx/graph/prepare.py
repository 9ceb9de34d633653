"""Turn a user's model into the canonical form every later stage works on, and infer static shapes."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import onnx
import onnx_graphsurgeon as gs

from agmc_onnx.errors import ModelLoadError
from agmc_onnx.graph.probe import PROBE_LENGTH, probe_feeds
from agmc_onnx.graph.skeleton import weightless_copy
from agmc_onnx.graph.versions import list_initializers_as_inputs
from agmc_onnx.passes.base import export_model
from agmc_onnx.passes.fold_constants import FoldConstantsPass, NameNodesPass

__all__ = ["prepare_model", "infer_static_shapes", "TensorShapes"]

log = logging.getLogger(__name__)

TensorShapes = Mapping[str, tuple[int, ...]]
_FLOAT_TYPES = frozenset(
    {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
)


def prepare_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """Unique node names and constant subgraphs folded (numerically identical).

    A copy when either changes something; otherwise ``model`` itself, so a model that needs no
    preparation is not held twice (callers treat the prepared model as read-only, as they do ``model``).
    """
    graph = gs.import_onnx(model)
    modified = False
    for each in (NameNodesPass(), FoldConstantsPass()):
        result = each(graph)
        graph, modified = result.graph, modified or result.modified
    return list_initializers_as_inputs(export_model(graph, model)) if modified else model


def infer_static_shapes(model: onnx.ModelProto, batch_size: int = 1) -> dict[str, tuple[int, ...]]:
    """Shapes of every tensor with dynamic input dimensions fixed to ``batch_size``.

    Dynamic non-leading dimensions of integer and boolean inputs (a sequence length) take ``PROBE_LENGTH``.
    Tensors whose shape stays unknown or symbolic are left out. Inference runs on a copy without the
    weights' bytes (their shapes are all it needs).
    """
    fixed, weights = weightless_copy(model)
    _fix_batch(fixed, batch_size, skip=weights)
    try:
        inferred = onnx.shape_inference.infer_shapes(
            fixed, check_type=False, strict_mode=False, data_prop=True
        )
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise ModelLoadError(f"shape inference failed: {str(exc).splitlines()[0]}") from None
    shapes: dict[str, tuple[int, ...]] = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        tensor_type = value.type.tensor_type
        if not tensor_type.HasField("shape"):
            continue
        dims = tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(int(d.dim_value) for d in dims)
    for init in model.graph.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
    missing = [out for node in inferred.graph.node for out in node.output if out and out not in shapes]
    if missing:
        shapes.update(_shapes_by_running(model, batch_size, missing))
    return shapes


def _fix_batch(model: onnx.ModelProto, batch_size: int, skip: set[str]) -> None:
    """Set dynamic input dimensions to ``batch_size`` and forget every stored intermediate shape."""
    initializer_names = skip | {init.name for init in model.graph.initializer}
    for graph_input in model.graph.input:
        if graph_input.name in initializer_names:
            continue
        is_float = graph_input.type.tensor_type.elem_type in _FLOAT_TYPES
        for axis, dim in enumerate(graph_input.type.tensor_type.shape.dim):
            if not dim.HasField("dim_value") or dim.dim_value <= 0:
                dim.Clear()
                dim.dim_value = batch_size if axis == 0 or is_float else PROBE_LENGTH
    del model.graph.value_info[:]
    for graph_output in model.graph.output:
        graph_output.type.tensor_type.ClearField("shape")


def _shapes_by_running(model: onnx.ModelProto, batch_size: int, names: list[str]) -> dict[str, tuple[int, ...]]:
    """Shapes that static inference could not find, read off one onnxruntime run on probe inputs.

    The session runs the weightless skeleton (``agmc_onnx.fed``) fed zeros for the large float weights:
    shapes do not depend on weight values, and zero arrays take no memory until written (the system maps
    them lazily), so probing holds no copy of the model.
    """
    import numpy as np

    from agmc_onnx.fed import FLOAT_TYPES, FedModel, run_fed

    skeleton, moved = weightless_copy(model, data_types=FLOAT_TYPES)
    try:
        zeros = {
            t.name: np.zeros(tuple(t.dims), onnx.helper.tensor_dtype_to_np_dtype(t.data_type))
            for t in model.graph.initializer
            if t.name in moved
        }
        fed = FedModel(skeleton, zeros)
        _fix_batch(fed.skeleton, batch_size, skip=set(fed.weights))
        known = {o.name for o in fed.skeleton.graph.output}
        fed.skeleton.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names if name not in known)
        outputs = run_fed(fed, probe_feeds(fed.skeleton, exclude=frozenset(fed.weights)))
    except Exception as exc:  # onnxruntime raises several unrelated types; the shapes just stay unknown
        log.info("could not run the model to find missing shapes: %s", exc)
        return {}
    return {name: tuple(int(d) for d in np.asarray(outputs[name]).shape) for name in names}
