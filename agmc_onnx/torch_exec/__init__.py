"""Execute ONNX graphs with torch (trainable weights keyed by initializer name); write trained values back."""

from agmc_onnx.torch_exec.executor import OnnxModule
from agmc_onnx.torch_exec.initializers import InitializerRole, plan_initializers
from agmc_onnx.torch_exec.ops import build_registry
from agmc_onnx.torch_exec.registry import OpContext, OpRegistry, OpSpec
from agmc_onnx.torch_exec.writeback import write_back

__all__ = [
    "OnnxModule",
    "write_back",
    "build_registry",
    "OpRegistry",
    "OpSpec",
    "OpContext",
    "InitializerRole",
    "plan_initializers",
]
