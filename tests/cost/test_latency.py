"""Target profiles, session configuration and latency measurement (no timing thresholds: values vary)."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from agmc_onnx.cost import (
    PROFILES,
    LatencyStats,
    create_session,
    get_profile,
    measure_latency,
    measure_paired,
    random_inputs,
)
from agmc_onnx.cost.session import session_options
from agmc_onnx.errors import ModelLoadError, PreconditionError, TargetUnavailableError
from agmc_onnx.models.zoo import zoo_model_path

QUICK = {"warmup_runs": 2, "min_runs": 5, "min_seconds": 0.0, "max_runs": 20}


def _conv_model(shape: list) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    weight = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32), "w"
    )
    node = helper.make_node("Conv", ["input", "w"], ["y"], pads=[1, 1, 1, 1])
    return helper.make_model(
        helper.make_graph([node], "conv", [x], [y], [weight]), opset_imports=[helper.make_opsetid("", 17)]
    )


def _assert_sane(stats: LatencyStats) -> None:
    values = (stats.median_ms, stats.p90_ms, stats.mean_ms)
    assert all(math.isfinite(v) and v > 0 for v in values)
    assert stats.p90_ms >= stats.median_ms
    assert stats.n_runs >= QUICK["min_runs"]


def test_profiles_are_defined_as_specified() -> None:
    assert set(PROFILES) == {"mobile-cpu", "edge-cpu", "server-cpu", "gpu"}
    mobile = PROFILES["mobile-cpu"]
    assert (mobile.provider, mobile.intra_op_threads, mobile.inter_op_threads, mobile.batch_size) == (
        "CPUExecutionProvider",
        1,
        1,
        1,
    )
    assert not mobile.allow_spinning and mobile.sequential and mobile.graph_optimization == "all"
    assert PROFILES["edge-cpu"].intra_op_threads == 2
    assert PROFILES["gpu"].provider == "CUDAExecutionProvider"
    assert get_profile("server-cpu", batch_size=7).batch_size == 7
    assert PROFILES["server-cpu"].batch_size != 7  # the table itself is never changed


def test_session_options_follow_the_profile() -> None:
    options = session_options(PROFILES["mobile-cpu"])
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_unknown_target_is_reported() -> None:
    with pytest.raises(TargetUnavailableError, match="unknown target 'tpu'; choose one of mobile-cpu"):
        get_profile("tpu")


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="a GPU build is installed"
)
def test_gpu_target_without_onnxruntime_gpu_gives_a_clear_error() -> None:
    with pytest.raises(
        TargetUnavailableError, match="target 'gpu' needs CUDAExecutionProvider.*onnxruntime-gpu"
    ):
        measure_latency(zoo_model_path("resnet20"), "gpu", **QUICK)


@pytest.mark.parametrize("target", ["mobile-cpu", "edge-cpu"])
def test_latency_of_the_zoo_resnet20_is_positive_and_finite(target: str) -> None:
    stats = measure_latency(zoo_model_path("resnet20"), target, **QUICK)
    _assert_sane(stats)
    assert (stats.target, stats.batch_size) == (target, 1)


def test_dynamic_batch_takes_the_requested_batch_and_fixed_batch_wins() -> None:
    dynamic = measure_latency(_conv_model(["n", 3, 8, 8]), "server-cpu", batch_size=3, **QUICK)
    fixed = measure_latency(_conv_model([2, 3, 8, 8]), "server-cpu", batch_size=3, **QUICK)
    assert (dynamic.batch_size, fixed.batch_size) == (3, 2)
    _assert_sane(dynamic)


def test_dynamic_spatial_dims_are_rejected() -> None:
    with pytest.raises(PreconditionError, match="dynamic dimension 'h' at axis 2"):
        random_inputs(create_session(_conv_model(["n", 3, "h", 8])), batch_size=1)


def test_unloadable_model_is_a_model_load_error(tmp_path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load .*junk.onnx"):
        create_session(tmp_path / "junk.onnx")
    with pytest.raises(ModelLoadError, match="model file not found"):
        create_session(tmp_path / "absent.onnx")


def test_paired_measurement_of_a_model_against_itself() -> None:
    model = _conv_model(["n", 3, 16, 16])
    paired = measure_paired(model, model, "mobile-cpu", n_rounds=4, runs_per_block=2, warmup_runs=2)
    assert paired.n_rounds == 4
    assert paired.a.n_runs == paired.b.n_runs == 4 * 2 * 2  # two blocks of each model per A-B-B-A round
    assert 0 < paired.speedup_low <= paired.speedup <= paired.speedup_high < math.inf
    assert paired.a.target == paired.b.target == "mobile-cpu"


def test_paired_rounds_spread_over_fresh_sessions(monkeypatch) -> None:
    from agmc_onnx.cost import latency

    created = []

    def counted(model, profile):
        created.append(1)
        return create_session(model, profile)

    monkeypatch.setattr(latency, "create_session", counted)
    model = _conv_model(["n", 3, 8, 8])
    paired = measure_paired(model, model, n_rounds=5, runs_per_block=1, warmup_runs=1, sessions=2)
    assert len(created) == 4  # a fresh pair per session
    assert paired.n_rounds == 5 and paired.a.n_runs == paired.b.n_runs == 5 * 2  # every round still timed
    with pytest.raises(PreconditionError, match="sessions"):
        measure_paired(model, model, n_rounds=2, sessions=3)


def test_paired_measurement_needs_two_rounds() -> None:
    model = _conv_model(["n", 3, 8, 8])
    with pytest.raises(PreconditionError, match="n_rounds ≥ 2"):
        measure_paired(model, model, n_rounds=1)
