"""The error hierarchy. Every failure a user can cause is an ``AgmcError``; the CLI turns it into one line."""

from __future__ import annotations

__all__ = [
    "AgmcError",
    "ModelLoadError",
    "UnsupportedOpError",
    "PreconditionError",
    "PostconditionError",
    "ValidationError",
    "BudgetUnreachableError",
    "PlanError",
    "DataError",
    "SanityCheckError",
    "TargetUnavailableError",
    "StaleTableError",
]


class AgmcError(Exception):
    """Base class of every error this package raises on purpose."""


class ModelLoadError(AgmcError):
    """The file is missing, not ONNX, truncated, or fails the ONNX checker."""


class UnsupportedOpError(AgmcError):
    """An operator the requested stage cannot handle."""

    def __init__(self, op_type: str, node_name: str, detail: str = "") -> None:
        self.op_type = op_type
        self.node_name = node_name
        message = f"unsupported operator {op_type} (node '{node_name}')"
        super().__init__(f"{message}: {detail}" if detail else message)


class PreconditionError(AgmcError):
    """A pass was given a graph or configuration it cannot work on."""


class PostconditionError(AgmcError):
    """A pass produced a graph that breaks its own guarantee (a bug, reported loudly)."""


class ValidationError(AgmcError):
    """A written model does not compute what it must."""

    def __init__(self, message: str, output_name: str = "", max_abs_diff: float = float("nan")) -> None:
        self.output_name = output_name
        self.max_abs_diff = max_abs_diff
        super().__init__(message)


class BudgetUnreachableError(AgmcError):
    """No pruning policy within the action bounds can meet the requested budget."""


class PlanError(AgmcError):
    """A pruning plan (keep ratios or kept indices) is malformed or names unknown groups."""


class DataError(AgmcError):
    """A dataset is missing, empty, corrupt, or does not fit the model."""


class SanityCheckError(DataError):
    """The original model does not work on the data it was given (chance accuracy, NaN or constant outputs)."""


class TargetUnavailableError(AgmcError):
    """A latency target needs hardware or an execution provider that is not present."""


class StaleTableError(AgmcError):
    """A latency table was measured on another CPU, onnxruntime version or target setting."""
