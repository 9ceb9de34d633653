"""ONNX tensor element types <-> torch dtypes, and TensorProto <-> torch tensor without precision loss."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import numpy_helper

__all__ = ["torch_dtype", "tensor_from_proto", "tensor_bytes", "FLOAT_TYPES"]

_TORCH_DTYPES = {
    onnx.TensorProto.FLOAT: torch.float32,
    onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.FLOAT16: torch.float16,
    onnx.TensorProto.BFLOAT16: torch.bfloat16,
    onnx.TensorProto.INT8: torch.int8,
    onnx.TensorProto.UINT8: torch.uint8,
    onnx.TensorProto.INT16: torch.int16,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.BOOL: torch.bool,
}

FLOAT_TYPES = frozenset(
    {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
)


def torch_dtype(onnx_type: int) -> torch.dtype:
    if onnx_type not in _TORCH_DTYPES:
        name = onnx.TensorProto.DataType.Name(onnx_type)
        raise TypeError(f"ONNX element type {name} has no torch equivalent here")
    return _TORCH_DTYPES[onnx_type]


def tensor_from_proto(proto: onnx.TensorProto) -> torch.Tensor:
    """A CPU tensor with exactly the proto's values and element type."""
    dtype = torch_dtype(proto.data_type)
    array = numpy_helper.to_array(proto)
    if dtype == torch.bfloat16:
        # numpy has no bfloat16: go through the raw 16-bit patterns.
        bits = np.ascontiguousarray(array).view(np.uint16).astype(np.int16)
        return torch.from_numpy(bits).view(torch.bfloat16).reshape(tuple(proto.dims))
    return torch.from_numpy(np.array(array, copy=True)).reshape(tuple(proto.dims))


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """Little-endian raw bytes of a tensor, the layout of ``TensorProto.raw_data``."""
    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().astype("<i2").tobytes()
    array = tensor.numpy()
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
