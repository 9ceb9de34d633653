"""Weights stored beside a model file (ONNX external data), for models over protobuf's 2 GiB limit.

Reading checks every reference before reading anything: the file must lie inside the model's folder
(no ``..``, no absolute path, no symlink leading out), exist, and hold exactly the tensor's bytes.
Writing streams each large tensor into one data file and builds a small model that points at it, so the
caller's model is neither copied whole nor modified. ``agmc_onnx.io`` is the only caller.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import onnx
from google.protobuf.message import Message

from agmc_onnx.errors import ModelLoadError

__all__ = [
    "external_tensors",
    "read_external_data",
    "write_external_data",
    "copy_fields",
    "tensor_bytes",
    "MIN_EXTERNAL_BYTES",
]

MIN_EXTERNAL_BYTES = 1024  # smaller tensors stay inside the model file (onnx's own default)
_ALIGN = 4096  # page-aligned offsets let onnxruntime map the data instead of reading it


@dataclass(frozen=True)
class _Reference:
    tensor: onnx.TensorProto
    file: Path
    offset: int
    length: int


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _graph_tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _graph_tensors(subgraph)


def external_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """Every tensor of the model (subgraphs and attributes included) whose bytes live in another file."""
    return [t for t in _graph_tensors(model.graph) if t.data_location == onnx.TensorProto.EXTERNAL]


def tensor_bytes(tensor: onnx.TensorProto) -> int | None:
    """Bytes of the tensor's data from its type and shape (None for strings and unknown types)."""
    if tensor.data_type == onnx.TensorProto.STRING:
        return None
    try:
        bits = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize * 8
    except (KeyError, TypeError, ValueError):
        return None
    if tensor.data_type in _FOUR_BIT_TYPES:
        bits = 4
    return (math.prod(tensor.dims) * bits + 7) // 8


_FOUR_BIT_TYPES = frozenset(
    getattr(onnx.TensorProto, name) for name in ("INT4", "UINT4", "FLOAT4E2M1") if hasattr(onnx.TensorProto, name)
)


def _reference(tensor: onnx.TensorProto, folder: Path, source: str) -> _Reference:
    entries = {entry.key: entry.value for entry in tensor.external_data}
    location = entries.get("location", "")
    where = f"{source}: tensor '{tensor.name}'"
    if not location:
        raise ModelLoadError(f"{where} is stored externally but names no file")
    target = (folder / location).resolve()
    if os.path.isabs(location) or not target.is_relative_to(folder):
        raise ModelLoadError(
            f"{where} points outside the model's folder ({location!r}); external data must lie beside the model"
        )
    if not target.is_file():
        raise ModelLoadError(f"{where}: external data file missing: {location} (expected in {folder})")
    try:
        offset = int(entries.get("offset", 0))
        size = target.stat().st_size
        length = int(entries["length"]) if "length" in entries else size - offset
    except ValueError:
        raise ModelLoadError(f"{where} has a malformed external data offset or length") from None
    expected = tensor_bytes(tensor)
    if offset < 0 or length < 0 or offset + length > size:
        raise ModelLoadError(
            f"{where}: external data file {location} is truncated "
            f"({size} bytes, the tensor needs bytes {offset}..{offset + length})"
        )
    if expected is not None and length != expected:
        raise ModelLoadError(f"{where}: external data holds {length} bytes, its shape needs {expected}")
    return _Reference(tensor, target, offset, length)


def read_external_data(model: onnx.ModelProto, folder: Path, source: str) -> int:
    """Load every external tensor of ``model`` from files in ``folder``; return how many were read.

    All references are checked first, so a bad one raises ``ModelLoadError`` before any byte is read.
    """
    folder = folder.resolve()
    references = [_reference(tensor, folder, source) for tensor in external_tensors(model)]
    handles: dict[Path, BinaryIO] = {}
    try:
        for ref in references:
            handle = handles.get(ref.file) or handles.setdefault(ref.file, open(ref.file, "rb"))  # noqa: SIM115
            handle.seek(ref.offset)
            ref.tensor.raw_data = handle.read(ref.length)
            ref.tensor.data_location = onnx.TensorProto.DEFAULT
            del ref.tensor.external_data[:]
    finally:
        for handle in handles.values():
            handle.close()
    return len(references)


def copy_fields(source: Message, target: Message, skip: frozenset[str] = frozenset()) -> None:
    """Copy every set field of ``source`` into ``target`` except those named in ``skip``."""
    for descriptor, value in source.ListFields():
        if descriptor.name in skip:
            continue
        if descriptor.is_repeated:
            getattr(target, descriptor.name).extend(value)
        elif descriptor.type == descriptor.TYPE_MESSAGE:
            getattr(target, descriptor.name).CopyFrom(value)
        else:
            setattr(target, descriptor.name, value)


def write_external_data(
    model: onnx.ModelProto, data: BinaryIO, location: str, skip_metadata: frozenset[str] = frozenset()
) -> onnx.ModelProto:
    """Stream the model's large initializers into ``data``; return a small model that refers to them.

    ``location`` is the data file's name relative to the model file. ``model`` is not modified.
    """
    small = onnx.ModelProto()
    copy_fields(model, small, skip=frozenset({"graph", "metadata_props"}))
    small.metadata_props.extend(p for p in model.metadata_props if p.key not in skip_metadata)
    copy_fields(model.graph, small.graph, skip=frozenset({"initializer"}))
    offset = 0
    for tensor in model.graph.initializer:
        raw = tensor.raw_data if tensor.HasField("raw_data") else b""
        if len(raw) < MIN_EXTERNAL_BYTES:
            small.graph.initializer.append(tensor)
            continue
        offset = _align(data, offset)
        data.write(raw)
        stored = small.graph.initializer.add()
        copy_fields(tensor, stored, skip=frozenset({"raw_data"}))
        stored.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", str(offset)), ("length", str(len(raw)))):
            entry = stored.external_data.add()
            entry.key, entry.value = key, value
        offset += len(raw)
    return small


def _align(data: BinaryIO, offset: int) -> int:
    padding = -offset % _ALIGN
    if padding:
        data.write(b"\0" * padding)
    return offset + padding
