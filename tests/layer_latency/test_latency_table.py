"""Per-layer latency tables: staircases, the predictor's interpolation, the on-disk cache and its identity."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest
import tiny_models

from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import StaleTableError
from agmc_onnx.layer_latency import LayerSignature, TableConfig, build_latency_model, check_identity
from agmc_onnx.layer_latency.predictor import lookup
from agmc_onnx.layer_latency.table import SignatureTable, TableCache

_QUICK = {"runs": 3, "max_sweep": 6, "max_fast_steps": 3, "calibration_rounds": 2, "calibration_plans": 2}


def _build(tmp_path, model=None, progress=None, **overrides):
    model = model or tiny_models.residual_chain()
    analysis = analyze_model(model)
    config = TableConfig(cache_dir=tmp_path, **{**_QUICK, **overrides})
    return build_latency_model(analysis, config, progress)


def test_prediction_at_full_width_is_the_measured_model(tmp_path) -> None:
    latency_model = _build(tmp_path)
    assert latency_model.full_cost == pytest.approx(latency_model.measured_full_ms)
    assert latency_model.slots and not latency_model.untabulated
    for staircase in latency_model.staircases:
        assert staircase.fast_counts[-1] == staircase.counts[-1]  # the full width is always a step
        assert set(staircase.fast_counts) <= set(staircase.counts)


def test_second_model_with_the_same_layer_shapes_measures_nothing(tmp_path) -> None:
    _build(tmp_path)
    measured = []
    _build(tmp_path, progress=lambda done, total, phase: measured.append((phase, total)))
    assert [total for phase, total in measured if phase in ("staircases", "grid")] == [0, 0]


def test_foreign_cache_file_is_measured_again_with_a_warning(tmp_path, caplog) -> None:
    latency_model = _build(tmp_path)
    files = list(tmp_path.rglob("*.json"))
    assert files
    for path in files:  # pretend these were measured with another onnxruntime
        data = json.loads(path.read_text())
        data["identity"]["onnxruntime"] = "0.0.1"
        path.write_text(json.dumps(data))
    cache = TableCache(latency_model.identity, tmp_path)
    with caplog.at_level(logging.WARNING):
        table = cache.table(latency_model.slots[0].signature)
    assert not table.entries and "measured elsewhere" in caplog.text


def test_explicit_table_from_another_cpu_is_refused(tmp_path) -> None:
    identity = _build(tmp_path).identity
    with pytest.raises(StaleTableError, match="cpu"):
        check_identity(identity, replace(identity, cpu="Some Other CPU"), "table.json")


def test_lookup_interpolates_between_measured_grid_points() -> None:
    signature = LayerSignature("Conv", (1, -1, 8, 8), 1, (3, 3))
    table = SignatureTable(signature, {(4, 4): 1.0, (4, 8): 2.0, (8, 4): 3.0, (8, 8): 4.0})
    assert lookup(table, 8, 4, (4, 8), (4, 8)) == 3.0
    assert lookup(table, 6, 6, (4, 8), (4, 8)) == pytest.approx(2.5)
    assert lookup(table, 4, 6, (4, 8), (4, 8)) == pytest.approx(1.5)


@pytest.mark.skipif(
    "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers(),
    reason="needs onnxruntime-gpu and a CUDA device",
)
def test_gpu_target_measures_on_the_cuda_provider() -> None:
    from agmc_onnx.cost import get_profile
    from agmc_onnx.layer_latency import measure_point

    signature = LayerSignature("Conv", (1, -1, 8, 8), 1, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1))
    assert measure_point(signature, 8, 8, get_profile("gpu"), "fp32", runs=3) > 0
