"""``compress`` end to end on a tiny model and tiny data: outputs, report schema, gate codes, resume."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_models import tiny_classifier

from agmc_onnx.cli.errors import EXIT_ACCURACY_GATE, EXIT_BUDGET_GATE
from agmc_onnx.cli.main import cli
from agmc_onnx.compress import pipeline
from agmc_onnx.compress.config import ConfigError, resolve_config
from agmc_onnx.compress.gate import evaluate_gate
from agmc_onnx.compress.report import GateResult


@pytest.fixture()
def workspace(tmp_path):
    model = tmp_path / "tiny.onnx"
    model.write_bytes(tiny_classifier().SerializeToString())
    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    images = rng.integers(0, 256, (96, 8, 8, 3), dtype=np.uint8)
    np.savez(data, x=images, y=_own_predictions(model, images))
    config = tmp_path / "ci.toml"
    config.write_text(
        "[compress]\nflops = 0.6\nepisodes = 3\nfinetune_epochs = 1\nreward_size = 16\ntest_size = 16\nround_to = 1\n"
    )
    return tmp_path, model, data, config


def _own_predictions(model_path, images):
    """Labels the model gets right: its own top-1 (so the sanity gate sees a working classifier)."""
    from agmc_onnx.cost.session import create_session
    from agmc_onnx.data import spec_from_model, to_model_input
    from agmc_onnx.io import load_model

    session = create_session(model_path)
    spec = spec_from_model(load_model(model_path))
    return session.run(None, {"input": to_model_input(images, spec)})[0].argmax(axis=1)


def _run(args):
    return CliRunner().invoke(cli, ["compress", *args])


def test_compress_end_to_end_writes_model_report_and_plots(workspace):
    tmp_path, model, data, config = workspace
    out = tmp_path / "out"
    result = _run([str(model), "--data", str(data), "--config", str(config), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["passed"] is True and summary["macs_kept_fraction"] <= 0.6
    for name in (
        "model.onnx",
        "report.json",
        "report.md",
        "episodes.jsonl",
        "accuracy_vs_macs.png",
        "channels.png",
        "latency.png",
    ):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] == 2 and report["task"] == "accuracy"
    assert set(report["original"]) == {
        "macs",
        "params",
        "file_bytes",
        "test_top1",
        "latency_median_ms",
        "latency_p90_ms",
        "test_fidelity",
    }
    assert report["final"]["macs"] < report["original"]["macs"]
    assert report["episodes"] == 3 and len((out / "episodes.jsonl").read_text().splitlines()) == 3
    assert report["gate"]["passed"] and report["budget_kind"] == "flops"
    assert 0.0 < report["speedup"] and report["speedup_low"] <= report["speedup"] <= report["speedup_high"]
    assert all(g["channels_after"] <= g["channels_before"] for g in report["groups"])
    assert "Compression report" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "gate, code",
    [
        (GateResult(False, True, False, ("accuracy dropped",)), EXIT_ACCURACY_GATE),
        (GateResult(False, False, True, ("budget not met",)), EXIT_BUDGET_GATE),
    ],
    ids=["accuracy", "budget"],
)
def test_gate_failure_has_its_own_exit_code_and_still_writes_the_report(workspace, monkeypatch, gate, code):
    tmp_path, model, data, config = workspace
    monkeypatch.setattr(pipeline, "evaluate_gate", lambda *args: gate)
    out = tmp_path / "out"
    result = _run([str(model), "--data", str(data), "--config", str(config), "-o", str(out)])
    assert result.exit_code == code
    assert "gate failed" in result.output and (out / "report.json").exists()


def test_gate_logic():
    assert evaluate_gate("flops", 0.5, 0.49, 1.0, 2.0).passed
    assert not evaluate_gate("flops", 0.5, 0.51, 1.0, None).budget_met
    failed = evaluate_gate("latency", 0.6, 0.5, 3.0, 2.0)
    assert failed.budget_met and not failed.accuracy_ok and "3.00 points" in failed.reasons[0]


def test_a_latency_budget_is_judged_within_the_timing_tolerance_and_macs_exactly():
    # 5 % of the budget: what the latency check accepts, so a plan the check ships is not failed for noise
    assert evaluate_gate("latency", 0.4, 0.4199, None, None).budget_met
    slow = evaluate_gate("latency", 0.4, 0.4201, None, None)
    assert not slow.budget_met and "+5% measurement tolerance: 42.0%" in slow.reasons[0]
    assert not evaluate_gate("flops", 0.4, 0.4001, None, None).budget_met


def test_interrupted_run_leaves_no_model_and_resumes(workspace, monkeypatch):
    tmp_path, model, data, config = workspace
    out = tmp_path / "out"
    from agmc_onnx.cli import compress_cmd

    seen = []

    def interrupt_at_second_episode(event):
        seen.append(event.message)
        if event.stage == "search" and event.message.startswith("episode 2/"):
            raise KeyboardInterrupt

    monkeypatch.setattr(compress_cmd, "_renderer", lambda: contextlib.nullcontext(interrupt_at_second_episode))
    result = _run([str(model), "--data", str(data), "--config", str(config), "-o", str(out)])
    assert result.exit_code == 130 and "run the same command again" in result.output.lower()
    assert not (out / "model.onnx").exists() and not (out / "report.json").exists()
    monkeypatch.undo()
    result = _run([str(model), "--data", str(data), "--config", str(config), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "(resuming)" in result.output and "episode 1/3" not in result.output
    assert len((out / "episodes.jsonl").read_text().splitlines()) == 3


def test_dry_run_estimates_without_searching(workspace):
    tmp_path, model, data, config = workspace
    result = _run([str(model), "--config", str(config), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["prunable_groups"] == 2 and summary["uniform_macs_kept_fraction"] <= 0.6
    assert not (tmp_path / "tiny-compressed").exists()


def test_dry_run_of_a_latency_budget_reads_the_measured_tables(workspace, monkeypatch):
    """The latency budget as the search sees it: tables built, the uniform plan on their fast steps meets
    the predicted budget, and the floor (every group at the lower bound) is reported."""
    from types import SimpleNamespace

    from agmc_onnx.graph.counting import count_cost

    tmp_path, model, data, config = workspace
    monkeypatch.setattr("agmc_onnx.layer_latency.table.default_table_dir", lambda: tmp_path / "tables")

    def paired(model_a, model_b, profile, **kwargs):  # latency ∝ MACs: the dry run's logic, not the machine
        a_ms, b_ms = (count_cost(m).macs * 1e-6 + 0.01 for m in (model_a, model_b))
        return SimpleNamespace(a=SimpleNamespace(median_ms=a_ms), speedup=a_ms / b_ms)

    monkeypatch.setattr("agmc_onnx.layer_latency.build.measure_point",
                        lambda signature, c_in, c_out, *args, **kwargs: 1e-4 * c_in * c_out + 1e-3)
    monkeypatch.setattr("agmc_onnx.layer_latency.build.measure_paired", paired)
    result = _run([str(model), "--config", str(config), "--latency", "0.95", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["latency_floor_ms"] <= summary["uniform_predicted_latency_ms"] <= summary["target_latency_ms"]
    assert summary["target_latency_ms"] == pytest.approx(0.95 * summary["original_latency_ms"])
    assert list((tmp_path / "tables").rglob("*.json")) and not (tmp_path / "tiny-compressed").exists()


def test_unreachable_budget_is_one_clear_error(workspace):
    tmp_path, model, data, config = workspace
    result = _run([str(model), "--config", str(config), "--flops", "0.01", "--dry-run"])
    assert result.exit_code == 1 and "budget unreachable" in result.output and "Traceback" not in result.output


def test_missing_data_is_one_clear_error(workspace):
    tmp_path, model, _, config = workspace
    result = _run([str(model), "--config", str(config), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and "compress needs data" in result.output


def test_flags_override_the_config_file_and_the_sidecar(workspace):
    tmp_path, model, data, config = workspace
    (tmp_path / "tiny.compress.toml").write_text('[compress]\nepisodes = 7\npolicy = "random"\n')
    resolved = resolve_config(model, config, {"latency": 0.7, "episodes": None})
    assert resolved.latency == 0.7 and resolved.flops is None  # the flag's budget replaces the file's
    assert resolved.episodes == 3 and resolved.policy == "random"  # file over sidecar; sidecar over defaults


def test_bad_config_file_is_refused(workspace):
    tmp_path, model, _, _ = workspace
    bad = tmp_path / "bad.toml"
    bad.write_text("[compress]\nepisodez = 3\n")
    with pytest.raises(ConfigError, match="unknown option"):
        resolve_config(model, bad, {})


def test_shipped_configs_are_valid():
    from trained_models import REPO_ROOT

    example = resolve_config(
        REPO_ROOT / "models" / "zoo" / "cifar10_resnet20.onnx", REPO_ROOT / "examples" / "compress.toml", {}
    )
    assert example.flops == 0.5 and example.max_accuracy_drop == 40.0
    demo = resolve_config(REPO_ROOT / "models" / "zoo" / "cifar10_resnet20.onnx", None, {})  # the sidecar
    assert demo.data is not None and (REPO_ROOT / "models" / "zoo" / "cifar10_demo_train.tar.xz").exists()
    assert demo.flops == 0.5 and demo.episodes <= 60
    label_free = resolve_config(
        REPO_ROOT / "models" / "zoo" / "cifar10_resnet20.onnx", REPO_ROOT / "examples" / "compress-label-free.toml", {}
    )
    assert label_free.task == "fidelity" and label_free.max_fidelity_loss == 5.0
    assert label_free.preprocessing_overrides() == {
        "layout": "NHWC",
        "color": "RGB",
        "size": (32, 32),
        "scale": 1.0,
        "mean": (0.0, 0.0, 0.0),
        "std": (1.0, 1.0, 1.0),
    }


def test_changed_finetune_settings_keep_the_finished_search(workspace):
    tmp_path, model, data, config = workspace
    out = tmp_path / "out"
    args = [str(model), "--data", str(data), "--config", str(config), "-o", str(out)]
    assert _run(args).exit_code == 0
    again = _run([*args, "--finetune-epochs", "2"])
    assert again.exit_code == 0, again.output
    assert "(resuming)" in again.output and "2 epoch(s)" in again.output
    restarted = _run([*args, "--restart"])
    assert restarted.exit_code == 0 and "(resuming)" not in restarted.output


def test_compress_quantize_int8_ships_the_int8_model_and_gates_it(workspace):
    tmp_path, model, data, config = workspace
    config.write_text(config.read_text() + 'quantize = "int8"\n')
    out = tmp_path / "out-int8"
    result = _run([str(model), "--data", str(data), "--config", str(config), "-o", str(out), "--json"])
    assert result.exit_code in (0, 3), result.output  # random labels: the accuracy gate is not the point
    report = json.loads((out / "report.json").read_text())
    assert report["quantized_format"] in ("qoperator", "qdq")
    int8 = report["quantized"]
    assert int8["file_bytes"] < report["final"]["file_bytes"]  # 8-bit weights
    assert report["accuracy_drop_points"] == pytest.approx(100 * (report["original"]["test_top1"] - int8["test_top1"]))
    ops = {node.op_type for node in __import__("onnx").load(str(out / "model.onnx")).graph.node}  # noqa: TID251
    assert ops & {"QLinearConv", "QuantizeLinear"}
    assert "INT8" in (out / "report.md").read_text()


def test_compress_distils_pruned_tensors_on_the_channels_the_plan_kept(workspace, monkeypatch):
    from agmc_onnx.analysis import analyze_model
    from agmc_onnx.io import load_model
    from agmc_onnx.plan import PruningPlan
    from agmc_onnx.prune import kept_channels

    tmp_path, model, data, config = workspace
    calls = []
    real = pipeline.finetune
    monkeypatch.setattr(pipeline, "finetune", lambda *a, **k: calls.append(k) or real(*a, **k))
    out = tmp_path / "out"
    result = _run([str(model), "--data", str(data), "--config", str(config), "-o", str(out)])
    assert result.exit_code == 0, result.output
    (kwargs,) = calls
    channels = kwargs["feature_channels"]
    assert kwargs["teacher"] is not None and channels  # the plan cut channels: their original positions
    ratios = json.loads((out / "report.json").read_text())["keep_ratios"]
    expected = kept_channels(analyze_model(load_model(model)), PruningPlan(ratios))
    assert channels.keys() == expected.keys()
    assert all(np.array_equal(channels[name], positions) for name, positions in expected.items())
