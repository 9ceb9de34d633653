"""Cost of a model on a target: onnxruntime latency per target profile."""

from agmc_onnx.cost.latency import (
    TIMING_TOLERANCE,
    LatencyStats,
    PairedLatency,
    latency_stats,
    measure_latency,
    measure_paired,
)
from agmc_onnx.cost.profiles import PROFILES, TargetProfile, get_profile, profile_names
from agmc_onnx.cost.session import ModelSource, check_target_available, create_session, random_inputs

__all__ = [
    "TIMING_TOLERANCE",
    "LatencyStats",
    "PairedLatency",
    "TargetProfile",
    "PROFILES",
    "ModelSource",
    "measure_latency",
    "measure_paired",
    "latency_stats",
    "get_profile",
    "profile_names",
    "create_session",
    "check_target_available",
    "random_inputs",
]
