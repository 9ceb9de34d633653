"""A model without the bytes of its weights: enough to check its structure and infer its shapes.

The ONNX checker and shape inference serialise the whole model (several copies of every weight, and
a hard failure above protobuf's 2 GiB). Neither needs the values of large initializers, only their
types and shapes, so they run on a skeleton in which those initializers become typed graph inputs.
"""

from __future__ import annotations

import onnx

from agmc_onnx.external_data import MIN_EXTERNAL_BYTES, copy_fields, tensor_bytes

__all__ = ["weightless_copy", "hollow_copy"]


def weightless_copy(
    model: onnx.ModelProto, min_bytes: int = MIN_EXTERNAL_BYTES, data_types: frozenset[int] | None = None
) -> tuple[onnx.ModelProto, set[str]]:
    """The model with initializers of ``min_bytes`` or more turned into graph inputs of the same type.

    Returns the skeleton and the names of the initializers it moved. Small initializers (shape constants,
    axes) stay, so shape inference still propagates their values; with ``data_types`` only initializers
    of those element types move. ``model`` is not modified.
    """
    skeleton = onnx.ModelProto()
    copy_fields(model, skeleton, skip=frozenset({"graph"}))
    copy_fields(model.graph, skeleton.graph, skip=frozenset({"initializer"}))
    declared = {value.name for value in model.graph.input}
    moved: set[str] = set()
    for tensor in model.graph.initializer:
        small = (tensor_bytes(tensor) or 0) < min_bytes  # from the header: no byte is read or serialised
        if small or (data_types is not None and tensor.data_type not in data_types):
            skeleton.graph.initializer.append(tensor)
            continue
        moved.add(tensor.name)
        if tensor.name not in declared:
            skeleton.graph.input.append(
                onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
            )
    return skeleton, moved


def hollow_copy(model: onnx.ModelProto, names: set[str] | frozenset[str]) -> onnx.ModelProto:
    """``model`` with the bytes of the named initializers left out (their names, types and shapes kept).

    For reading the graph's structure and the weights' shapes once the weights live elsewhere; the copy
    shares no memory with ``model``, so dropping ``model`` frees its weights. ``model`` is not modified.
    """
    hollow = onnx.ModelProto()
    copy_fields(model, hollow, skip=frozenset({"graph"}))
    copy_fields(model.graph, hollow.graph, skip=frozenset({"initializer"}))
    for tensor in model.graph.initializer:
        if tensor.name in names:
            hollow.graph.initializer.add(name=tensor.name, data_type=tensor.data_type, dims=list(tensor.dims))
        else:
            hollow.graph.initializer.append(tensor)
    return hollow
