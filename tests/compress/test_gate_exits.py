"""The compress gate's exits reached for real: no stand-in for the gate, a report written every time.

Exit 3 comes from a real accuracy drop: the test labels are the original model's own predictions
(so it scores 100 %), and pruning to 30 % of the MACs without fine-tuning changes predictions.
Exit 4 comes from a real latency measurement: a MACs budget cannot be missed (the search's action
wall is exact, and ``tests/validate/test_independent_macs.py`` checks the MACs model it uses), so the
budget is a latency one; the search predicts latency from an idealised device on which time is
proportional to MACs, and the final paired onnxruntime measurement of a tiny model, whose time is
mostly per-run overhead, cannot show the predicted 2x.
Exit 1 comes from the oracle rejecting a wrongly wired model.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from tiny_models import tiny_classifier

from agmc_onnx.cli.main import cli
from agmc_onnx.compress import pipeline
from agmc_onnx.cost import LatencyStats
from agmc_onnx.graph.counting import count_cost
from agmc_onnx.search import latency_model


@pytest.fixture()
def self_labelled(tmp_path):
    """A tiny classifier and 96 images labelled by its own predictions (1/255 scaling, as compress reads them)."""
    model = tiny_classifier(seed=5)  # a seed whose predictions spread over 3 classes
    path = tmp_path / "tiny.onnx"
    path.write_bytes(model.SerializeToString())
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (96, 1, 1, 3))  # plain noise gives every image the same prediction
    images = np.clip(colours + rng.integers(-40, 41, (96, 8, 8, 3)), 0, 255).astype(np.uint8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0})[0]
    data = tmp_path / "tiny.npz"
    np.savez(data, x=images, y=logits.argmax(1))
    config = tmp_path / "ci.toml"
    config.write_text(
        "[compress]\nepisodes = 2\nfinetune_epochs = 0\nreward_size = 16\ntest_size = 32\nround_to = 1\n"
    )
    return tmp_path, path, data, config


def _compress(tmp_path, model, data, config, *extra):
    out = tmp_path / "out"
    args = ["compress", str(model), "--data", str(data), "--config", str(config), "-o", str(out), *extra]
    return CliRunner().invoke(cli, args), out


def test_accuracy_gate_exits_3_with_the_drop_and_writes_the_report(self_labelled):
    tmp_path, model, data, config = self_labelled
    result, out = _compress(tmp_path, model, data, config, "--flops", "0.3", "--max-accuracy-drop", "5")
    assert result.exit_code == 3, result.output
    assert "gate failed: accuracy dropped" in result.output and "Traceback" not in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["original"]["test_top1"] == pytest.approx(1.0)
    assert report["final"]["test_top1"] < 0.95
    assert report["gate"]["budget_met"] and not report["gate"]["accuracy_ok"]
    assert (out / "report.md").exists() and (out / "model.onnx").exists()


def _idealised_search(monkeypatch) -> None:
    """The search predicts latency from an idealised device on which time is proportional to MACs."""

    def idealised_device(model, target, **kwargs):
        ms = count_cost(model).macs * 1e-6
        return LatencyStats(ms, ms, ms, 50, target, 1)

    monkeypatch.setattr(latency_model, "measure_latency", idealised_device)

    def fitted_budget(analysis, groups, keep, target, precision, lower_bound, round_to, cache_dir, removable, scores):
        # The idealised device goes through the MACs fit; measured tables would time this machine instead.
        from agmc_onnx.search.budget import ActionWall

        fit = latency_model.fit_latency_model(analysis, groups, target, round_to, scores=scores)
        return ActionWall(groups, fit.cost_model, keep * fit.original_ms, lower_bound, round_to, removable), fit

    monkeypatch.setattr("agmc_onnx.search.run.table_budget", fitted_budget)


def test_budget_gate_exits_4_on_a_measured_latency_and_writes_the_report(self_labelled, monkeypatch):
    tmp_path, model, data, config = self_labelled
    _idealised_search(monkeypatch)
    result, out = _compress(tmp_path, model, data, config, "--latency", "0.5", "--no-check-latency")
    assert result.exit_code == 4, result.output
    assert "gate failed: budget not met: median latency kept" in result.output
    report = json.loads((out / "report.json").read_text())
    assert not report["gate"]["budget_met"] and report["achieved_keep_fraction"] > 0.5
    assert report["latency_check"] is None  # --no-check-latency: the searched plan as it was
    assert (out / "report.md").exists()


def test_a_latency_budget_is_timed_as_it_ships_and_re_targeted(self_labelled, monkeypatch):
    """The searched plan is timed on a device unlike the search's model (per-run overhead the MACs fit did not
    see); the plan is re-targeted onto the measurement and the report states every check."""
    from types import SimpleNamespace

    tmp_path, model, data, config = self_labelled
    _idealised_search(monkeypatch)

    overhead = 0.3  # per run, as a share of the original's MACs-time: pruning gains less than the MACs say

    def device(model_a, model_b, target, **kwargs):
        a_ms, b_ms = (overhead * count_cost(model_a).macs * 1e-6 + count_cost(m).macs * 1e-6 for m in (model_a, model_b))
        return SimpleNamespace(speedup=a_ms / b_ms)

    monkeypatch.setattr("agmc_onnx.compress.latency_stage.measure_paired", device)
    result, out = _compress(tmp_path, model, data, config, "--latency", "0.6", "--json")
    assert result.exit_code in (0, 4), result.output  # the final timing is this machine's
    report = json.loads((out / "report.json").read_text())
    check = report["latency_check"]
    first, last = check["checks"][0], check["checks"][-1]
    first_error, last_error = (abs(c["measured_fraction"] / 0.6 - 1) for c in (first, last))
    assert first_error > 0.05  # the searched plan, as the device runs it, is off the budget
    assert len(check["checks"]) >= 2 and last_error < first_error
    assert check["measured_fraction"] == check["checks"][check["shipped_check"]]["measured_fraction"]
    # the final timing (this machine, not the device) is held against the check: once, or thrice and the median
    assert len(check["final_speedups"]) in (1, 3) and report["speedup"] == sorted(check["final_speedups"])[
        len(check["final_speedups"]) // 2]
    assert "closed by measurement" in (out / "report.md").read_text()
    assert json.loads(result.stdout)["latency_check"] == check
    macs_kept = report["final"]["macs"] / report["original"]["macs"]  # the model returned is the plan shipped
    assert macs_kept == pytest.approx((1 + overhead) * check["measured_fraction"] - overhead)


@pytest.mark.slow  # the same branch is covered through `prune` in tests/cli/test_validation_exits.py
def test_wrongly_wired_model_exits_1_before_anything_is_written(self_labelled, monkeypatch):
    tmp_path, model, data, config = self_labelled
    real = pipeline.prune_model

    def miswired(*args, **kwargs):
        result = real(*args, **kwargs)
        broken = type(result.model)()
        broken.CopyFrom(result.model)
        gemm = next(n for n in broken.graph.node if n.op_type == "Gemm")
        weight = next(i for i in broken.graph.initializer if i.name == gemm.input[1])
        values = np.frombuffer(weight.raw_data, np.float32).reshape(tuple(weight.dims)).copy()
        values[:, [0, 1]] = values[:, [1, 0]]
        weight.raw_data = values.tobytes()
        return dataclasses.replace(result, model=broken)

    monkeypatch.setattr(pipeline, "prune_model", miswired)
    result, out = _compress(tmp_path, model, data, config, "--flops", "0.5")
    assert result.exit_code == 1, result.output
    assert "pruned model differs from the masked original on" in result.output
    assert "Traceback" not in result.output and not (out / "model.onnx").exists()
