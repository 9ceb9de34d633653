"""Latency target profiles, defined once as data.

A profile fixes everything that changes an onnxruntime timing: execution provider, thread counts,
spinning, execution mode, graph optimisation level and batch size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from agmc_onnx.errors import PreconditionError, TargetUnavailableError

__all__ = ["TargetProfile", "PROFILES", "get_profile", "profile_names"]


@dataclass(frozen=True)
class TargetProfile:
    """One latency target. ``intra_op_threads = 0`` means all CPU cores of the machine."""

    name: str
    description: str
    provider: str = "CPUExecutionProvider"
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    batch_size: int = 1
    # Spinning threads burn a core while idle: fine on a server, unlike a phone's power budget.
    allow_spinning: bool = False
    sequential: bool = True
    graph_optimization: str = "all"  # "disable" | "basic" | "extended" | "all"


PROFILES: Mapping[str, TargetProfile] = MappingProxyType(
    {
        profile.name: profile
        for profile in (
            TargetProfile("mobile-cpu", "one big core of a phone: 1 thread, batch 1, no spinning"),
            TargetProfile(
                "edge-cpu", "small edge board: 2 threads, batch 1, no spinning", intra_op_threads=2
            ),
            TargetProfile(
                "server-cpu",
                "server CPU: all cores, batch 32, spinning allowed",
                intra_op_threads=0,
                batch_size=32,
                allow_spinning=True,
            ),
            TargetProfile(
                "gpu",
                "CUDA GPU through onnxruntime-gpu, batch 1",
                provider="CUDAExecutionProvider",
                intra_op_threads=0,
                allow_spinning=True,
            ),
        )
    }
)


def profile_names() -> tuple[str, ...]:
    return tuple(PROFILES)


def get_profile(target: str | TargetProfile, batch_size: int | None = None) -> TargetProfile:
    """The profile named ``target`` (or ``target`` itself), with ``batch_size`` replaced when given."""
    if isinstance(target, TargetProfile):
        profile = target
    elif target in PROFILES:
        profile = PROFILES[target]
    else:
        raise TargetUnavailableError(f"unknown target {target!r}; choose one of {', '.join(PROFILES)}")
    if batch_size is not None:
        if batch_size < 1:
            raise PreconditionError(f"batch size must be ≥ 1, got {batch_size}")
        profile = dataclasses.replace(profile, batch_size=batch_size)
    return profile
