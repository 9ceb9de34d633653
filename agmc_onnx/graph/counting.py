"""MACs and parameter counts of a whole model, from inferred static shapes."""

from __future__ import annotations

from dataclasses import dataclass

import onnx
import onnx_graphsurgeon as gs

from agmc_onnx.graph.layers import describe_layers
from agmc_onnx.graph.prepare import infer_static_shapes
from agmc_onnx.io import model_file_size

__all__ = ["ModelCost", "count_cost"]


@dataclass(frozen=True)
class ModelCost:
    macs: int  # multiply-accumulates of Conv/ConvTranspose/Gemm/MatMul at batch 1
    params: int  # float constants read by nodes
    file_bytes: int


def count_cost(model: onnx.ModelProto) -> ModelCost:
    shapes = infer_static_shapes(model, batch_size=1)
    layers = describe_layers(gs.import_onnx(model), shapes)
    return ModelCost(
        macs=sum(layer.macs for layer in layers.values()),
        params=sum(layer.params for layer in layers.values()),
        file_bytes=model_file_size(model),
    )
