"""The default op registry, built explicitly from the op modules (no import side effects)."""

from __future__ import annotations

from agmc_onnx.torch_exec.ops_math import register_math_ops
from agmc_onnx.torch_exec.ops_nn import register_nn_ops
from agmc_onnx.torch_exec.ops_shape import register_shape_ops
from agmc_onnx.torch_exec.registry import OpRegistry

__all__ = ["build_registry", "DEFAULT_DOMAINS"]

# Ops of these domains are looked up in the registry; any other domain is unsupported.
DEFAULT_DOMAINS = frozenset({"", "ai.onnx"})


def build_registry() -> OpRegistry:
    """A fresh registry holding every op this executor supports."""
    registry = OpRegistry()
    register_nn_ops(registry)
    register_math_ops(registry)
    register_shape_ops(registry)
    return registry
