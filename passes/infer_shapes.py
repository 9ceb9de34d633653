"""InferShapesPass: onnx's shape inference records every tensor's shape it can find (as value_info)."""

from __future__ import annotations

import onnx

from agmc_onnx.graph.skeleton import weightless_copy
from agmc_onnx.passes.base import ModelPass, ModelPassResult

__all__ = ["InferShapesPass"]


class InferShapesPass(ModelPass):
    """Shapes onnx can infer, kept as value_info and output shapes; what it cannot infer stays unknown.

    Inference runs on the model's weightless skeleton, so no copy of the weights is made.
    """

    def call(self, model: onnx.ModelProto) -> ModelPassResult:
        skeleton, moved = weightless_copy(model)
        inferred = onnx.shape_inference.infer_shapes(skeleton, strict_mode=False)
        del model.graph.value_info[:]
        model.graph.value_info.extend(v for v in inferred.graph.value_info if v.name not in moved)
        for declared, found in zip(model.graph.output, inferred.graph.output):
            declared.CopyFrom(found)
        return ModelPassResult(model, True, {"value_info": len(model.graph.value_info)})
