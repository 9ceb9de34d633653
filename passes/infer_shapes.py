"""InferShapesPass: onnx's shape inference records every tensor's shape it can find (as value_info)."""

from __future__ import annotations

import onnx

from agmc_onnx.passes.base import ModelPass, ModelPassResult

__all__ = ["InferShapesPass"]


class InferShapesPass(ModelPass):
    """Shapes onnx can infer, kept as value_info; what it cannot infer stays unknown (never an error)."""

    def call(self, model: onnx.ModelProto) -> ModelPassResult:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        return ModelPassResult(inferred, True, {"value_info": len(inferred.graph.value_info)})
