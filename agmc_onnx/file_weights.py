"""Weights read again from the model file, so that the parsed model need not be kept for them.

The protobuf runtime cannot hand the bytes of a parsed weight to NumPy: an array made from a parsed
model is a copy, and the parsed model frees its bytes only as a whole. The equivalence oracle needs the
loaded model's weights as arrays after pruning, while the prepared model (the loaded one, when preparing
changed nothing) would otherwise stay in memory only to provide them: two copies of every weight. Here
the file's wire format is scanned once for where each initializer's ``raw_data`` lies; the oracle then
reads those bytes straight into fresh arrays, and its owner can drop the parsed weights first.
"""

from __future__ import annotations

import mmap
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from agmc_onnx.errors import ValidationError
from agmc_onnx.external_data import tensor_bytes

__all__ = ["FileWeights", "raw_data_spans", "file_weights"]

_GRAPH, _INITIALIZER, _NAME, _RAW_DATA = 7, 5, 8, 9  # ModelProto.graph, GraphProto.initializer, TensorProto.*


class _Malformed(Exception):
    pass


def _varint(buffer, position: int) -> tuple[int, int]:
    value = shift = 0
    while shift < 64:
        byte = buffer[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
    raise _Malformed


def _fields(buffer, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of each length-delimited field of the message in ``buffer[start:end]``."""
    position = start
    while position < end:
        key, position = _varint(buffer, position)
        kind = key & 7
        if kind == 0:
            position = _varint(buffer, position)[1]
        elif kind in (1, 5):
            position += 8 if kind == 1 else 4
        elif kind == 2:
            length, position = _varint(buffer, position)
            yield key >> 3, position, position + length
            position += length
        else:  # groups: not in ONNX
            raise _Malformed
    if position != end:
        raise _Malformed


def raw_data_spans(path: Path) -> dict[str, tuple[int, int]]:
    """(offset, length) in ``path`` of each initializer's ``raw_data``; empty if the file is not plain
    wire format with one graph (names given twice are left out: the parser keeps only the last)."""
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
        try:
            graphs = [(start, end) for number, start, end in _fields(buffer, 0, len(buffer)) if number == _GRAPH]
            if len(graphs) != 1:
                return {}
            spans: dict[str, tuple[int, int]] = {}
            repeated: set[str] = set()
            for number, start, end in _fields(buffer, *graphs[0]):
                if number != _INITIALIZER:
                    continue
                name, raw = None, None
                for field, first, last in _fields(buffer, start, end):
                    if field == _NAME:
                        name = buffer[first:last].decode("utf-8", "replace")
                    elif field == _RAW_DATA:
                        raw = (first, last - first)
                if name is not None and raw is not None:
                    repeated.update({name} & spans.keys())
                    spans[name] = raw
        except (_Malformed, IndexError):
            return {}
    return {name: span for name, span in spans.items() if name not in repeated}


@dataclass(frozen=True)
class FileWeights:
    """Where a model file holds weights bit for bit as parsed, and the file's identity when it was read."""

    path: Path
    spans: Mapping[str, tuple[int, int, np.dtype, tuple[int, ...]]]  # offset, length, dtype, shape
    stamp: tuple[int, int, int, int]  # device, inode, size, modification time (ns)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every weight of ``spans`` as a new writable array, read from the file.

        Raises ``ValidationError`` if the file changed since the weights were matched to it.
        """
        weights = {}
        with open(self.path, "rb") as file:
            if _stamp(os.fstat(file.fileno())) != self.stamp:
                raise ValidationError(f"{self.path} changed on disk while it was being pruned")
            for name, (offset, length, dtype, shape) in self.spans.items():
                array = np.empty(shape, dtype)
                if os.preadv(file.fileno(), [memoryview(array).cast("B")], offset) != length:
                    raise ValidationError(f"{self.path} changed on disk while it was being pruned")
                weights[name] = array
        return weights


def _stamp(status: os.stat_result) -> tuple[int, int, int, int]:
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def file_weights(path: Path, tensors: Mapping[str, onnx.TensorProto]) -> FileWeights | None:
    """The weights among ``tensors`` (as parsed from ``path``) whose ``raw_data`` the file holds bit for bit;
    None where none does (weights in external data or typed fields, a big-endian machine, no ``preadv``)."""
    if sys.byteorder != "little" or not hasattr(os, "preadv"):
        return None
    stamp = _stamp(os.stat(path))
    found = raw_data_spans(path)
    spans = {}
    with open(path, "rb") as file:
        for name, tensor in tensors.items():
            offset, length = found.get(name, (0, -1))
            if not tensor.HasField("raw_data") or tensor_bytes(tensor) != length:
                continue
            if os.pread(file.fileno(), length, offset) == tensor.raw_data:  # one weight's two copies at a time
                dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
                spans[name] = (offset, length, dtype, tuple(tensor.dims))
    return FileWeights(path, spans, stamp) if spans else None
