"""onnxruntime sessions for a model given as a ModelProto, serialized bytes or a file path.

In-memory models are serialized to bytes and handed to onnxruntime directly: no temporary file, so a
search can score thousands of candidate models cheaply.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from agmc_onnx.cost.profiles import TargetProfile, get_profile
from agmc_onnx.errors import ModelLoadError, PreconditionError, TargetUnavailableError
from agmc_onnx.graph.probe import PROBE_LENGTH, index_bounds

__all__ = [
    "ModelSource",
    "create_session",
    "session_options",
    "check_target_available",
    "random_inputs",
    "model_index_bounds",
    "session_input_shape",
    "quiet_default_logger",
]

_ORT_DEFAULT_SEVERITY = 2  # onnxruntime's own default: warnings and worse
_SILENT = 4  # fatal only: errors still raise, and reach the user as our messages

ModelSource = onnx.ModelProto | bytes | str | os.PathLike

_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def session_options(profile: TargetProfile) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = profile.intra_op_threads or (os.cpu_count() or 1)
    options.inter_op_num_threads = profile.inter_op_threads
    options.execution_mode = (
        ort.ExecutionMode.ORT_SEQUENTIAL if profile.sequential else ort.ExecutionMode.ORT_PARALLEL
    )
    options.graph_optimization_level = _OPT_LEVELS[profile.graph_optimization]
    options.add_session_config_entry(
        "session.intra_op.allow_spinning", "1" if profile.allow_spinning else "0"
    )
    options.log_severity_level = _SILENT  # onnxruntime would print warnings and errors itself; errors raise anyway
    return options


@contextmanager
def quiet_default_logger() -> Iterator[None]:
    """onnxruntime's process-wide default logger silenced while third-party code creates sessions without
    options (onnx-graphsurgeon's constant folding, onnxruntime's quantizer): their graph-optimiser warnings
    ("UnsqueezeElimination cannot remove node …") would otherwise reach stderr. Sessions the library creates
    itself carry their own severity (``session_options``).

    onnxruntime offers no getter for that severity, so on exit it is set back to onnxruntime's default
    (warnings), not to a level the caller may have set: a caller wanting another one sets it again after.
    """
    ort.set_default_logger_severity(_SILENT)
    try:
        yield
    finally:
        ort.set_default_logger_severity(_ORT_DEFAULT_SEVERITY)


def check_target_available(profile: TargetProfile) -> None:
    """Raise TargetUnavailableError when this onnxruntime build lacks the profile's execution provider."""
    available = ort.get_available_providers()
    if profile.provider not in available:
        hint = (
            " (install onnxruntime-gpu on a machine with an NVIDIA GPU)" if "CUDA" in profile.provider else ""
        )
        raise TargetUnavailableError(
            f"target '{profile.name}' needs {profile.provider}, which onnxruntime {ort.__version__} here "
            f"does not offer (available: {', '.join(available)}){hint}; "
            "use a CPU target such as mobile-cpu instead"
        )


def create_session(model: ModelSource, target: str | TargetProfile | None = None) -> ort.InferenceSession:
    """An InferenceSession configured by ``target`` (default: CPU, all cores, for throughput work)."""
    profile = get_profile(target) if target is not None else get_profile("server-cpu")
    check_target_available(profile)
    payload, source = _model_payload(model)
    try:
        session = ort.InferenceSession(payload, session_options(profile), providers=[profile.provider])
    except Exception as exc:  # onnxruntime raises its own pybind exception types, with no common base
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelLoadError(f"onnxruntime cannot load {source}: {first_line}") from None
    if session.get_providers()[0] != profile.provider:
        raise TargetUnavailableError(
            f"target '{profile.name}': {profile.provider} is installed but could not start "
            f"(no usable device?); onnxruntime fell back to {session.get_providers()[0]}"
        )
    return session


def _model_payload(model: ModelSource) -> tuple[bytes | str, str]:
    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString(), "the in-memory model"
    if isinstance(model, bytes):
        return model, "the serialized model"
    path = Path(model)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    return str(path), str(path)


def session_input_shape(session: ort.InferenceSession) -> tuple[int | str | None, ...]:
    """Shape of the session's first input (strings or None for dynamic dims)."""
    return tuple(session.get_inputs()[0].shape)


def random_inputs(
    session: ort.InferenceSession,
    batch_size: int,
    seed: int = 0,
    index_bounds: Mapping[str, int] | None = None,
) -> Mapping[str, np.ndarray]:
    """Seeded valid feeds of every input's shape; a dynamic leading dim becomes ``batch_size``.

    Floats are standard-normal; integer inputs named in ``index_bounds`` (token ids) are drawn below their
    bound, other integer and boolean inputs (masks) are ones, and their dynamic non-leading dimensions
    (the sequence length) take ``PROBE_LENGTH``.
    """
    rng = np.random.default_rng(seed)
    bounds = index_bounds or {}
    feeds = {}
    for value in session.get_inputs():
        dtype = _NUMPY_TYPES.get(value.type)
        if dtype is None:
            raise PreconditionError(f"input '{value.name}' has type {value.type}, which has no random generator")
        is_float = np.issubdtype(dtype, np.floating)
        shape = [_probe_dim(value, axis, dim, batch_size, is_float) for axis, dim in enumerate(value.shape)]
        if is_float:
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
        elif value.name in bounds and dtype is not np.bool_:
            feeds[value.name] = rng.integers(0, bounds[value.name], size=shape).astype(dtype)
        else:
            feeds[value.name] = np.ones(shape, dtype=dtype)
    return feeds


def _probe_dim(value, axis: int, dim, batch_size: int, is_float: bool) -> int:
    if isinstance(dim, int) and dim > 0:
        return dim
    if axis == 0:
        return batch_size
    if not is_float:
        return PROBE_LENGTH
    raise PreconditionError(
        f"input '{value.name}' has dynamic dimension {dim!r} at axis {axis} (shape {value.shape}); "
        "only the batch dimension of a float input may be dynamic for latency measurement"
    )


def model_index_bounds(model: ModelSource) -> dict[str, int]:
    """``index_bounds`` of a model given in any form ``create_session`` accepts."""
    if isinstance(model, bytes):
        model = onnx.ModelProto.FromString(model)
    elif not isinstance(model, onnx.ModelProto):
        from agmc_onnx.io import load_model

        model = load_model(model, check=False)
    return index_bounds(model)
