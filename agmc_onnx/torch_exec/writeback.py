"""``write_back``: trained values replace the initializers of the very graph the module was built from."""

from __future__ import annotations

import onnx

from agmc_onnx.errors import PreconditionError
from agmc_onnx.torch_exec.dtypes import tensor_bytes, tensor_from_proto, torch_dtype
from agmc_onnx.torch_exec.executor import OnnxModule

__all__ = ["write_back"]

# Typed payload fields a TensorProto may use instead of raw_data; cleared when raw_data is written.
_TYPED_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")


def write_back(model: onnx.ModelProto, module: OnnxModule) -> onnx.ModelProto:
    """A copy of ``model`` whose initializers hold ``module``'s parameters and BN statistics.

    Names, nodes, opset, metadata and element types are kept; an initializer whose value did not change
    is left byte for byte as it was, so an untrained module gives back an identical model.
    """
    trained = module.onnx_state()
    result = onnx.ModelProto()
    result.CopyFrom(model)
    found = set()
    for proto in result.graph.initializer:
        if proto.name not in trained:
            continue
        found.add(proto.name)
        _replace_values(proto, trained[proto.name])
    missing = sorted(set(trained) - found)
    if missing:
        raise PreconditionError(
            f"the module holds {len(missing)} values the model has no initializer for "
            f"(first: '{missing[0]}'); "
            "write back into the model the module was built from"
        )
    return result


def _replace_values(proto: onnx.TensorProto, value) -> None:
    expected_shape = tuple(proto.dims)
    if tuple(value.shape) != expected_shape:
        raise PreconditionError(
            f"initializer '{proto.name}' has shape {list(expected_shape)} but the module holds "
            f"{list(value.shape)}; write back into the model the module was built from"
        )
    new_bytes = tensor_bytes(value.detach().to(torch_dtype(proto.data_type)))
    if new_bytes == tensor_bytes(tensor_from_proto(proto)):
        return  # unchanged: keep the original encoding untouched
    for field in _TYPED_FIELDS:
        proto.ClearField(field)
    proto.raw_data = new_bytes
