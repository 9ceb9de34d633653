"""The only place that reads or writes model files.

Writes are atomic: the model goes to a temporary file in the destination folder and is renamed
into place, so an interrupted run never leaves a half-written model behind. A model stored with
external data (``M.onnx`` + its data file) is read through ``agmc_onnx.external_data``, which never
reads outside the model's folder; it is marked so that ``save_model`` writes it back the same way
(``OUT.onnx`` + ``OUT.onnx.data``).
"""

from __future__ import annotations

import logging
import mmap
import os
import tempfile
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from agmc_onnx.errors import ModelLoadError
from agmc_onnx.external_data import copy_fields, read_external_data, tensor_bytes, write_external_data
from agmc_onnx.graph.versions import default_opset, list_initializers_as_inputs, upgrade_opset
from agmc_onnx.passes.check_model import CheckModelPass

__all__ = [
    "load_model",
    "check_model_file",
    "save_model",
    "write_bytes_atomic",
    "model_file_size",
    "stored_size",
    "MIN_OPSET",
    "EXTERNAL_DATA_KEY",
    "default_opset",
]

log = logging.getLogger(__name__)

MIN_OPSET = 11
# Models above protobuf's 2 GiB limit must keep their weights in external data.
_EXTERNAL_DATA_THRESHOLD = 1_800_000_000
# metadata_props key set on a model read with external data; save_model consumes it and never writes it.
EXTERNAL_DATA_KEY = "agmc_onnx.loaded_with_external_data"


def load_model(path: str | os.PathLike, *, check: bool = True) -> onnx.ModelProto:
    """Read an ONNX model (external-data files included), convert opsets 7–10 up, and check it.

    Raises ``ModelLoadError`` with one readable sentence for a missing, non-ONNX, truncated
    or invalid file, or one whose external-data file is missing.
    """
    path = check_model_file(path)
    try:
        model = _parse_model_file(path)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"{path} is not a readable ONNX model (truncated or another format): {exc}") from None
    if not model.graph.node:
        raise ModelLoadError(f"{path} is not an ONNX model: it has no graph nodes")
    try:
        if read_external_data(model, path.parent, source=str(path)):
            model.metadata_props.add(key=EXTERNAL_DATA_KEY, value="1")
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read its external data: {exc.strerror or exc}") from None
    model = upgrade_opset(model, MIN_OPSET, source=str(path))
    if check:
        check_model(model, source=str(path))
    return model


def _parse_model_file(path: Path) -> onnx.ModelProto:
    """The ``ModelProto`` in ``path`` (external data not read), parsed straight from a read-only mapping of
    the file: no second copy of its bytes in memory, and its pages come in at once rather than one fault
    per page (half of what reading the file into bytes costs)."""
    model = onnx.ModelProto()
    with open(path, "rb") as file:
        if hasattr(mmap, "MAP_POPULATE"):  # Linux
            mapped = mmap.mmap(file.fileno(), 0, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ)
        else:
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    with mapped, memoryview(mapped) as view:
        model.ParseFromString(view)
    return model


def check_model_file(path: str | os.PathLike) -> Path:
    """``path`` as a ``Path`` when it names a non-empty file; otherwise the ``ModelLoadError`` that
    ``load_model`` gives (the CLI checks a MODEL argument with this before any work starts)."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelLoadError(f"expected an ONNX file, got a directory: {path}")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"model file is empty: {path}")
    return path


def check_model(model: onnx.ModelProto, source: str = "model") -> None:
    """Run the ONNX checker (full check, on a copy without the weights' bytes) and the opset check."""
    opset = default_opset(model)
    if opset < MIN_OPSET:
        raise ModelLoadError(
            f"{source} uses opset {opset}; opset {MIN_OPSET} or newer is required "
            "(upgrade with onnx.version_converter.convert_version)"
        )
    CheckModelPass(subject=source, error=ModelLoadError)(model)


def save_model(model: onnx.ModelProto, path: str | os.PathLike, external_data: bool | None = None) -> Path:
    """Write ``model`` to ``path`` atomically; ``model`` is not modified.

    With external data the weights go to ``PATH.data`` beside it, the pair written atomically. By default
    that happens for models read with external data and for models too large for one protobuf file.
    """
    path = Path(path)
    model = list_initializers_as_inputs(model)
    marked = any(prop.key == EXTERNAL_DATA_KEY for prop in model.metadata_props)
    if external_data is None:
        external_data = marked or model_file_size(model) >= _EXTERNAL_DATA_THRESHOLD
    if external_data:
        _save_with_external_data(model, path)
    elif marked:
        write_bytes_atomic(path, _without_marker(model).SerializeToString())
    else:
        write_bytes_atomic(path, model.SerializeToString())
    log.info("wrote %s (%d bytes)", path, path.stat().st_size)
    return path


def _without_marker(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    kept = [p for p in copy.metadata_props if p.key != EXTERNAL_DATA_KEY]
    del copy.metadata_props[:]
    copy.metadata_props.extend(kept)
    return copy


def _save_with_external_data(model: onnx.ModelProto, path: Path) -> None:
    """``path`` and ``path.data``, renamed into place together once both are complete on disk.

    An existing model at ``path`` is removed before the data file is replaced, so a crash between the
    two renames leaves no model rather than a model that points at the wrong data.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data_path = path.with_name(f"{path.name}.data")
    temporaries: list[str] = []
    try:
        data_fd, data_tmp = tempfile.mkstemp(prefix=f".{data_path.name}.", suffix=".tmp", dir=path.parent)
        temporaries.append(data_tmp)
        with os.fdopen(data_fd, "wb") as data:
            small = write_external_data(model, data, data_path.name, skip_metadata=frozenset({EXTERNAL_DATA_KEY}))
            data.flush()
            os.fsync(data.fileno())
        model_tmp = _write_temporary(path, small.SerializeToString())
        temporaries.append(model_tmp)
        for name in temporaries:
            os.chmod(name, 0o666 & ~_current_umask())
        path.unlink(missing_ok=True)
        os.replace(data_tmp, data_path)
        os.replace(model_tmp, path)
    except BaseException:
        for name in temporaries:
            Path(name).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, payload: bytes) -> Path:
    """Write ``payload`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = _write_temporary(path, payload)
    try:
        os.chmod(tmp_name, 0o666 & ~_current_umask())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def _write_temporary(path: Path, payload: bytes) -> str:
    """``payload`` in a synced temporary file beside ``path``; removed again if writing fails."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return tmp_name


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def model_file_size(model: onnx.ModelProto) -> int:
    """Serialized size in bytes, as it would be written to one file.

    Summed tensor by tensor: protobuf's ``ByteSize`` on the whole model serialises it (a transient copy
    of every weight, and seconds on a large model).
    """
    head = onnx.ModelProto()
    copy_fields(model, head, skip=frozenset({"graph"}))
    if not model.HasField("graph"):
        return head.ByteSize()
    body = onnx.GraphProto()
    copy_fields(model.graph, body, skip=frozenset({"initializer"}))
    tag = _varint_size(onnx.GraphProto.DESCRIPTOR.fields_by_name["initializer"].number << 3)
    graph_size = body.ByteSize() + sum(
        tag + _varint_size(size) + size for size in (_tensor_size(t) for t in model.graph.initializer)
    )
    graph_tag = _varint_size(onnx.ModelProto.DESCRIPTOR.fields_by_name["graph"].number << 3)
    return head.ByteSize() + graph_tag + _varint_size(graph_size) + graph_size


_RAW_DATA_TAG = 1  # the key of TensorProto.raw_data (field 9, length-delimited) takes one byte


def _tensor_size(tensor: onnx.TensorProto) -> int:
    """``tensor.ByteSize()``; for plain raw data, from the header (upb's ``ByteSize`` walks the bytes)."""
    length = tensor_bytes(tensor)
    plain = not (tensor.HasField("segment") or tensor.external_data or tensor.metadata_props)
    if length is None or not plain or not tensor.HasField("raw_data") or tensor.HasField("data_location"):
        return tensor.ByteSize()
    header = onnx.TensorProto(name=tensor.name, dims=tensor.dims, data_type=tensor.data_type)
    if tensor.HasField("doc_string"):
        header.doc_string = tensor.doc_string
    return header.ByteSize() + _RAW_DATA_TAG + _varint_size(length) + length


def stored_size(path: str | os.PathLike) -> int:
    """Bytes a model file takes on disk, with the ``PATH.data`` file ``save_model`` writes beside it."""
    path = Path(path)
    data = path.with_name(f"{path.name}.data")
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)


def _varint_size(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)
