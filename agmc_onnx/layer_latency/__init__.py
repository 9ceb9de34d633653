"""Per-layer latency tables measured on the target (the lookup-table approach of AMC and HALP), and the
whole-model predictor built from them: Σ table entries + a measured per-model overhead."""

from agmc_onnx.layer_latency.build import (
    ProgressCallback,
    TableConfig,
    build_latency_model,
    profile_model,
    shipping_form,
)
from agmc_onnx.layer_latency.micro import PRECISIONS, measure_point, micro_model
from agmc_onnx.layer_latency.predictor import GroupStaircase, LayerLatencyModel
from agmc_onnx.layer_latency.signature import LayerSignature, LayerSlot, layer_slots
from agmc_onnx.layer_latency.table import TableCache, TableIdentity, check_identity, current_identity

__all__ = [
    "PRECISIONS",
    "GroupStaircase",
    "LayerLatencyModel",
    "LayerSignature",
    "LayerSlot",
    "ProgressCallback",
    "TableCache",
    "TableConfig",
    "TableIdentity",
    "build_latency_model",
    "profile_model",
    "shipping_form",
    "check_identity",
    "current_identity",
    "layer_slots",
    "measure_point",
    "micro_model",
]
