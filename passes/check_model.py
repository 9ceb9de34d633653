"""CheckModelPass: the ONNX checker (full check, with shape inference) as the last pass of a rewrite."""

from __future__ import annotations

import onnx

from agmc_onnx.errors import ValidationError
from agmc_onnx.passes.base import ModelPass, ModelPassResult

__all__ = ["CheckModelPass"]


class CheckModelPass(ModelPass):
    """Leaves the model unchanged; a model the checker refuses is a ``ValidationError`` naming its first line."""

    def call(self, model: onnx.ModelProto) -> ModelPassResult:
        try:
            onnx.checker.check_model(model, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValidationError(f"written model fails the ONNX checker: {first_line}") from None
        return ModelPassResult(model, False)
