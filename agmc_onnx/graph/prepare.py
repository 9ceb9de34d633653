"""Turn a user's model into the canonical form every later stage works on, and infer static shapes."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import onnx

from agmc_onnx.errors import ModelLoadError
from agmc_onnx.passes.base import run_passes
from agmc_onnx.passes.fold_constants import FoldConstantsPass, NameNodesPass

__all__ = ["prepare_model", "infer_static_shapes", "TensorShapes"]

log = logging.getLogger(__name__)

TensorShapes = Mapping[str, tuple[int, ...]]


def prepare_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy with unique node names and constant subgraphs folded (numerically identical)."""
    return run_passes(model, [NameNodesPass(), FoldConstantsPass()])


def infer_static_shapes(model: onnx.ModelProto, batch_size: int = 1) -> dict[str, tuple[int, ...]]:
    """Shapes of every tensor with dynamic input dimensions fixed to ``batch_size``.

    Tensors whose shape stays unknown or symbolic are left out.
    """
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    initializer_names = {init.name for init in fixed.graph.initializer}
    for graph_input in fixed.graph.input:
        if graph_input.name in initializer_names:
            continue
        for dim in graph_input.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value") or dim.dim_value <= 0:
                dim.Clear()
                dim.dim_value = batch_size
    del fixed.graph.value_info[:]
    for graph_output in fixed.graph.output:
        graph_output.type.tensor_type.ClearField("shape")
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, check_type=False, strict_mode=False, data_prop=True)
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
    for init in inferred.graph.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
    return shapes
