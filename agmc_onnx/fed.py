"""Running a model in onnxruntime with its weights fed as inputs, so that sessions hold no weights.

A session built from a whole serialised model holds the serialised bytes, onnxruntime's parsed copy and
its own tensors while it starts (three copies of every weight, one while it lives) and cannot be built
at all above protobuf's 2 GiB. Here a session is built from the model's weightless skeleton (its large
float initializers become typed graph inputs, ``graph/skeleton.py``) and the weights are fed on each
run as NumPy arrays, which onnxruntime reads where they lie. Models that differ only in their graph
(the oracle's loaded model, masked reference and perturbed reference) then share one set of arrays.
Sessions run without graph optimisations: a fused or re-laid-out weight would be a copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from agmc_onnx.errors import ValidationError
from agmc_onnx.graph.skeleton import weightless_copy

__all__ = ["FLOAT_TYPES", "FedModel", "split_weights", "fed_session", "run_fed"]

FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16})


@dataclass
class FedModel:
    """A weightless skeleton and the arrays fed to its weight inputs (a dict the caller may rebind)."""

    skeleton: onnx.ModelProto
    weights: dict[str, np.ndarray]


def split_weights(model: onnx.ModelProto, role: str = "model") -> FedModel:
    """``model`` as a skeleton plus one array per large float initializer; ``model`` is not modified.

    The arrays share nothing with ``model`` and may be read-only; replace an entry to change a weight.
    A weight whose bytes do not match its type and shape raises ``ValidationError``.
    """
    skeleton, moved = weightless_copy(model, data_types=FLOAT_TYPES)
    weights = {}
    for tensor in model.graph.initializer:
        if tensor.name in moved:
            try:
                weights[tensor.name] = numpy_helper.to_array(tensor)
            except ValueError as exc:
                raise ValidationError(f"the {role}'s weight '{tensor.name}' is unreadable: {exc}") from None
    return FedModel(skeleton, weights)


def fed_session(skeleton: onnx.ModelProto) -> ort.InferenceSession:
    """A one-thread CPU session of ``skeleton`` without graph optimisations."""
    options = ort.SessionOptions()
    options.log_severity_level = 4  # onnxruntime prints its errors itself; they come back as exceptions
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(skeleton.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run_fed(fed: FedModel, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output of ``fed`` on ``feeds``; the session is released before returning."""
    session = fed_session(fed.skeleton)
    names = [output.name for output in session.get_outputs()]
    values = session.run(names, {**feeds, **fed.weights})
    return dict(zip(names, values))
