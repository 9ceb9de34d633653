"""``compress`` without labels (fidelity to the original) and the refusals that leave nothing behind."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from test_compress import _own_predictions
from tiny_models import no_prunable_group, tiny_classifier

from agmc_onnx.cli.main import cli
from agmc_onnx.data.preprocessing import METADATA_KEY
from agmc_onnx.io import load_model


@pytest.fixture()
def tiny(tmp_path):
    model = tmp_path / "tiny.onnx"
    model.write_bytes(tiny_classifier().SerializeToString())
    images = np.random.default_rng(0).integers(0, 256, (80, 8, 8, 3), dtype=np.uint8)
    (tmp_path / "small.toml").write_text("reward_size = 16\ntest_size = 16\nfinetune_epochs = 1\n")
    return tmp_path, model, images


def test_unlabelled_images_compress_by_fidelity_and_the_output_states_its_preprocessing(tiny):
    tmp_path, model, images = tiny
    np.savez(tmp_path / "unlabelled.npz", x=images)
    out = tmp_path / "out"
    data = tmp_path / "unlabelled.npz"
    result = _compress(model, "--data", data, "--mean", "0.5,0.5,0.5", "-o", out, "--max-fidelity-loss", "0", "--json")
    report = json.loads((out / "report.json").read_text())
    summary = json.loads(result.stdout)
    assert report["task"] == "fidelity" and "has no labels" in report["task_reason"]
    assert report["fidelity_metric"] == "top-1 agreement" and report["original"]["test_top1"] is None
    assert report["accuracy_drop_points"] is None and summary["task"] == "fidelity"
    final = report["final"]["test_fidelity"]
    assert report["fidelity_loss_points"] == pytest.approx(100 * (1 - final))
    assert result.exit_code == (0 if final == 1.0 else 3), result.output  # the fidelity gate at 0 points
    assert "mean 0.5,0.5,0.5" in report["preprocessing"] and "test fidelity to the original" in result.output
    written = load_model(out / "model.onnx")
    metadata = {prop.key: prop.value for prop in written.metadata_props}
    assert '"mean": [0.5, 0.5, 0.5]' in metadata[METADATA_KEY]


def test_arrays_keyed_by_input_name_reconstruct_and_ship_int8_judged_by_fidelity(tiny):
    tmp_path, model, images = tiny
    inputs = (images.transpose(0, 3, 1, 2) / 255.0).astype(np.float32)
    np.savez(tmp_path / "named.npz", input=inputs)
    out = tmp_path / "out"
    result = _compress(model, "--data", tmp_path / "named.npz", "--quantize", "int8", "-o", out, "--json")
    assert result.exit_code in (0, 3), result.output
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "fidelity" and report["preprocessing"].startswith("arrays fed as stored")
    int8 = report["quantized"]
    assert int8 is not None and 0.0 <= int8["test_fidelity"] <= 1.0 and int8["test_top1"] is None
    assert report["fidelity_loss_points"] == pytest.approx(100 * (1 - int8["test_fidelity"]))  # judges INT8
    assert "shipped INT8" in result.output


def _compress(model, *args):
    config = ["--config", str(model.with_name("small.toml")), "--episodes", "2", "--round-to", "1", "--flops", "0.6"]
    return CliRunner().invoke(cli, ["compress", str(model), *map(str, args), *config])


def test_chance_level_original_stops_before_anything_is_written(tiny):
    tmp_path, model, images = tiny
    labels = (_own_predictions(model, images) + 1) % 4  # every label wrong: the original scores 0 %
    np.savez(tmp_path / "wrong.npz", x=images, y=labels, classes=np.array(["a", "b", "c", "d"]))
    result = _compress(model, "--data", tmp_path / "wrong.npz", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "no better than 2× chance" in result.output and "--layout" in result.output
    assert not (tmp_path / "out").exists()


def test_npz_missing_an_input_and_a_model_without_prunable_groups_are_refused(tiny):
    tmp_path, model, images = tiny
    np.savez(tmp_path / "named.npz", pixels=images.astype(np.float32))
    result = _compress(model, "--data", tmp_path / "named.npz", "-o", tmp_path / "out")
    assert result.exit_code == 1 and "lacks the model input(s) ['input']" in result.output
    assert not (tmp_path / "out").exists()
    frozen = tmp_path / "frozen.onnx"
    frozen.write_bytes(no_prunable_group().SerializeToString())
    np.savez(tmp_path / "unlabelled.npz", x=images)
    result = _compress(frozen, "--data", tmp_path / "unlabelled.npz", "-o", tmp_path / "out")
    assert result.exit_code == 1 and "has no prunable channel group" in result.output
    assert not (tmp_path / "out").exists()


def test_data_that_cannot_feed_the_model_names_the_input_and_what_it_expects(tiny):
    tmp_path, model, _ = tiny
    np.savez(tmp_path / "big.npz", x=np.zeros((20, 16, 16, 3), np.uint8))
    result = _compress(model, "--data", tmp_path / "big.npz", "-o", tmp_path / "out")
    assert result.exit_code == 1 and "16×16 but the model expects 8×8" in result.output
    assert not (tmp_path / "out").exists()


def test_the_gate_judges_the_int8_model_that_ships_by_its_own_fidelity():
    from agmc_onnx.compress.gate import evaluate_gate
    from agmc_onnx.compress.pipeline import _with_int8
    from agmc_onnx.compress.report import CompressionReport, ModelFigures

    original = ModelFigures(100, 10, 1000, None, 1.0, 1.0, 1.0)
    final = ModelFigures(50, 5, 500, None, None, None, 0.99)
    report = CompressionReport(
        "m.onnx", "model.onnx", "mobile-cpu", "flops", 0.5, 0.5, "agmc", 2, 0, 0.99, {}, original, final, final,
        2.0, 1.9, 2.1, None, None, evaluate_gate("flops", 0.5, 0.5, None, None, 1.0, 5.0), {}, {},
        config={"max_accuracy_drop": None, "max_fidelity_loss": 5.0}, task="fidelity", fidelity_loss_points=1.0,
    )
    judged = _with_int8(report, ModelFigures(50, 5, 200, None, 0.5, 0.6, 0.9), "qoperator")
    assert judged.fidelity_loss_points == pytest.approx(10.0) and judged.accuracy_drop_points is None
    assert not judged.gate.passed and judged.gate.verdict == "accuracy"
    assert "fidelity fell 10.00" in judged.gate.reasons[0]
