"""The only place that reads or writes model files.

Writes are atomic: the model goes to a temporary file in the destination folder and is renamed
into place, so an interrupted run never leaves a half-written model behind.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from agmc_onnx.errors import ModelLoadError

__all__ = ["load_model", "save_model", "write_bytes_atomic", "model_file_size", "MIN_OPSET"]

log = logging.getLogger(__name__)

MIN_OPSET = 11
# Models above protobuf's 2 GiB limit must keep their weights in external data.
_EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def load_model(path: str | os.PathLike, *, check: bool = True) -> onnx.ModelProto:
    """Read an ONNX model (external-data files included) and check it.

    Raises ``ModelLoadError`` with one readable sentence for a missing, non-ONNX, truncated
    or invalid file.
    """
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelLoadError(f"expected an ONNX file, got a directory: {path}")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"model file is empty: {path}")
    try:
        model = onnx.load(str(path), load_external_data=True)  # noqa: TID251
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"{path} is not a readable ONNX model (truncated or another format): {exc}") from None
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{path}: external data file missing: {exc}") from None
    if not model.graph.node:
        raise ModelLoadError(f"{path} is not an ONNX model: it has no graph nodes")
    if check:
        check_model(model, source=str(path))
    return model


def check_model(model: onnx.ModelProto, source: str = "model") -> None:
    """Run the ONNX checker (full check) and the opset check."""
    opset = default_opset(model)
    if opset < MIN_OPSET:
        raise ModelLoadError(
            f"{source} uses opset {opset}; opset {MIN_OPSET} or newer is required "
            "(upgrade with onnx.version_converter.convert_version)"
        )
    try:
        if model.ByteSize() < _EXTERNAL_DATA_THRESHOLD:
            onnx.checker.check_model(model, full_check=True)
        else:
            onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{source} fails the ONNX checker: {first_line}") from None


def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def save_model(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` atomically; large models keep their weights in one external file."""
    path = Path(path)
    if model.ByteSize() < _EXTERNAL_DATA_THRESHOLD:
        write_bytes_atomic(path, model.SerializeToString())
    else:
        _save_with_external_data(model, path)
    log.info("wrote %s (%d bytes)", path, path.stat().st_size)
    return path


def _save_with_external_data(model: onnx.ModelProto, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        onnx.save(  # noqa: TID251
            model, tmp_name, save_as_external_data=True, all_tensors_to_one_file=True, location=f"{path.name}.data"
        )
        os.chmod(tmp_name, 0o666 & ~_current_umask())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, payload: bytes) -> Path:
    """Write ``payload`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~_current_umask())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def model_file_size(model: onnx.ModelProto) -> int:
    """Serialized size in bytes, as it would be written to disk."""
    return model.ByteSize()
