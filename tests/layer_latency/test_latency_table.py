"""Per-layer latency tables: staircases, the predictor's interpolation, the on-disk cache and its identity."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import tiny_models

from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import StaleTableError
from agmc_onnx.layer_latency import LayerSignature, TableConfig, build_latency_model, check_identity
from agmc_onnx.layer_latency.build import _fit, _sweep_counts, calibration_plans
from agmc_onnx.layer_latency.predictor import lookup
from agmc_onnx.layer_latency.table import SignatureTable, TableCache

_QUICK = {"runs": 3, "max_sweep": 6, "max_fast_steps": 3, "calibration_rounds": 2, "calibration_plans": 2}


def _build(tmp_path, model=None, progress=None, **overrides):
    model = model or tiny_models.residual_chain()
    analysis = analyze_model(model)
    config = TableConfig(cache_dir=tmp_path, **{**_QUICK, **overrides})
    return build_latency_model(analysis, config, progress)


def test_the_predictor_is_a_least_squares_fit_of_its_calibration_models(tmp_path) -> None:
    """The full model is one calibration point (weight 1), not pinned: the fitted line's residuals over the
    calibration models (full one first, at ratio 1) sum to zero, and their latencies are kept."""
    latency_model = _build(tmp_path)
    points = latency_model.calibration_points
    assert len(points) == 1 + _QUICK["calibration_plans"] and points[0][1] == 1.0
    residuals = [(latency_model.overhead_ms + latency_model.scale * t + latency_model.macs_ms * q)
                 - ratio * latency_model.measured_full_ms for (t, q), ratio, _ in points]
    assert sum(residuals) == pytest.approx(0.0, abs=1e-9)
    assert latency_model.calibration_ms[0] == latency_model.measured_full_ms
    assert latency_model.slots and not latency_model.untabulated
    for staircase in latency_model.staircases:
        assert staircase.fast_counts[-1] == staircase.counts[-1]  # the full width is always a step
        assert set(staircase.fast_counts) <= set(staircase.counts)


def test_calibration_models_keep_the_counts_the_search_chooses_from() -> None:
    """With a grid, the calibration models' counts are fast steps on it or the full width (what the search's
    plans keep); without one, odd fast steps such as 5 or 12 of 16 are drawn too."""
    staircases = [SimpleNamespace(group_id="a", counts=tuple(range(1, 17)), fast_counts=(5, 8, 12, 16)),
                  SimpleNamespace(group_id="b", counts=tuple(range(1, 33)), fast_counts=(7, 16, 24, 31, 32))]
    raw = SimpleNamespace(staircases=staircases)
    groups = {"a": SimpleNamespace(n_units=16, unit_width=1), "b": SimpleNamespace(n_units=32, unit_width=1)}
    on_grid = calibration_plans(raw, 12, groups=groups, round_to=8)
    assert len(on_grid) == 12
    assert {round(p["a"] * 16) for p in on_grid} == {8, 16}
    assert {round(p["b"] * 32) for p in on_grid} <= {16, 24, 32}
    every = calibration_plans(raw, 12)
    assert {round(p["a"] * 16) for p in every} - {8, 16}


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


def test_a_deleted_branch_credits_its_layers_whole(tmp_path) -> None:
    """A group at keep 0 (a residual branch deleted) leaves its producer without outputs and its consumer
    without inputs: both cost nothing, the other layers are unchanged (clamping to one channel would
    still charge them)."""
    latency_model = _build(tmp_path)
    branch = next(s.group_id for s in latency_model.staircases
                  if sum(latency_model.macs.out_share[:, latency_model.macs.group_ids.index(s.group_id)] > 0) == 1)
    keep = np.ones(len(latency_model.macs.group_ids))
    keep[latency_model.macs.group_ids.index(branch)] = 0.0
    full, deleted = latency_model.layer_ms(np.ones_like(keep)), latency_model.layer_ms(keep)
    zeroed = deleted == 0.0
    assert 2 <= zeroed.sum() < len(full)
    assert np.array_equal(deleted[~zeroed], full[~zeroed])


def test_fit_reads_overhead_scale_and_macs_term_and_falls_back_without_a_macs_term() -> None:
    features = [(10.0, 1.0), (6.0, 0.5), (4.0, 0.3), (7.0, 0.4), (5.0, 0.45)]
    exact = [1.5 + 0.8 * t + 2.0 * q for t, q in features]
    overhead, scale, macs_ms = _fit(features, [m / exact[0] for m in exact], exact[0])
    assert (overhead, scale, macs_ms) == pytest.approx((1.5, 0.8, 2.0))
    no_macs = [0.5 + 1.2 * t - 1.0 * q for t, q in features]  # a negative MACs term is not physical
    overhead, scale, macs_ms = _fit(features, [m / no_macs[0] for m in no_macs], no_macs[0])
    assert macs_ms == 0.0 and 0.25 <= scale <= 2.0


def test_large_groups_are_swept_on_multiples_of_eight_only() -> None:
    counts = _sweep_counts(256, 1, TableConfig(max_sweep=12))
    assert len(counts) <= 12 and counts[-1] == 256
    assert all(c % 8 == 0 for c in counts)
    assert _sweep_counts(40, 1, TableConfig(max_sweep=64)) == tuple(range(8, 41))  # small: every count


def test_a_table_point_stops_timing_once_its_median_is_stable(monkeypatch) -> None:
    from agmc_onnx.layer_latency import micro

    calls = []
    session = SimpleNamespace(run=lambda outputs, feeds: calls.append(1))
    monkeypatch.setattr(micro, "create_session", lambda model, profile: session)
    monkeypatch.setattr(micro, "random_inputs", lambda session, batch: {})
    ticks = iter(range(10**6))
    monkeypatch.setattr(micro.time, "perf_counter", lambda: float(next(ticks)))  # every run takes 1 s
    signature = LayerSignature("Conv", (1, -1, 8, 8), 1, (3, 3))
    profile = SimpleNamespace(batch_size=1)
    assert micro.measure_point(signature, 8, 8, profile, "fp32", runs=25, warmup_runs=0) == 1000.0
    assert len(calls) == 10  # two blocks agree
    noisy = iter(np.cumsum(np.tile([0.0, 1.0, 0.0, 5.0], 10**4)).tolist())  # run times alternate 1 s, 5 s
    monkeypatch.setattr(micro.time, "perf_counter", lambda: next(noisy))
    calls.clear()
    micro.measure_point(signature, 8, 8, profile, "fp32", runs=25, warmup_runs=0)
    assert len(calls) == 25


def test_table_coordinates_are_the_pruned_layers_widths_where_units_differ_in_cost() -> None:
    """A ShuffleNetV2 stream's units hold unequal positions per layer; each tabulated layer's (in, out)
    coordinates are still the channel counts of the written model."""
    from agmc_onnx.groups.macs_model import MacsModel
    from agmc_onnx.layer_latency.signature import layer_slots
    from agmc_onnx.plan import uniform_plan
    from agmc_onnx.prune import prune_model

    model = tiny_models.shufflenet_v2_stream()
    analysis = analyze_model(model)
    macs = MacsModel.from_analysis(analysis)
    slots, _ = layer_slots(analysis, macs)
    result = prune_model(model, uniform_plan(analysis.groups, 0.4), analysis=analysis)
    keep = {g.id: len(result.selection.keep_units.get(g.id, range(g.n_units))) / g.n_units for g in analysis.groups}
    shares = macs.kept_shares(macs.keep_array(keep))
    weights = {node.name: node for node in result.model.graph.node}
    sizes = {init.name: tuple(init.dims) for init in result.model.graph.initializer}
    checked = 0
    for slot in slots:
        if slot.signature.per_group is not None:
            continue  # depthwise: (kept groups, kept groups)
        out_channels, in_channels = sizes[weights[slot.name].input[1]][:2]
        assert slot.counts(shares) == (in_channels, out_channels), slot.name
        checked += 1
    assert checked >= 7 and macs.ranked
