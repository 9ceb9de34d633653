"""CheckModelPass: the ONNX checker (full check, with shape inference), the one place it runs.

It checks the model's weightless skeleton (``graph/skeleton.py``): the checker serialises what it is given,
and the values of large weights say nothing about the structure it checks.
"""

from __future__ import annotations

import onnx

from agmc_onnx.errors import AgmcError, ValidationError
from agmc_onnx.graph.skeleton import weightless_copy
from agmc_onnx.passes.base import ModelPass, ModelPassResult

__all__ = ["CheckModelPass"]


class CheckModelPass(ModelPass):
    """Leaves the model unchanged; a model the checker refuses raises ``error`` (a ``ValidationError`` by
    default) with one line: "<subject> fails the ONNX checker: <the checker's first line>"."""

    def __init__(self, subject: str = "written model", error: type[AgmcError] = ValidationError) -> None:
        self.subject = subject
        self.error = error

    def call(self, model: onnx.ModelProto) -> ModelPassResult:
        try:
            onnx.checker.check_model(weightless_copy(model)[0], full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise self.error(f"{self.subject} fails the ONNX checker: {first_line}") from None
        return ModelPassResult(model, False)
