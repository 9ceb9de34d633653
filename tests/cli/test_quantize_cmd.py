"""``agmc-onnx quantize`` through click's CliRunner on the shipped demo model and data."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from tiny_models import TinyNet

from agmc_onnx.cli.main import cli
from agmc_onnx.io import save_model
from agmc_onnx.models.zoo import demo_data_path, zoo_model_path


def test_quantize_writes_an_int8_model_and_reports_accuracy(tmp_path: Path) -> None:
    output = tmp_path / "int8.onnx"
    args = ["quantize", str(zoo_model_path("resnet20")), "--data", str(demo_data_path()), "-o", str(output)]
    args += ["--format", "qoperator", "--calibration-images", "64", "--test-images", "100", "--rounds", "2", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["format"] == "qoperator" and payload["portable"] is False
    assert payload["test_images"] == 100 and payload["calibration_images"] == 64
    assert abs(payload["top1_after"] - payload["top1_before"]) <= 0.05  # INT8 keeps a trained model's accuracy
    assert output.stat().st_size < 0.4 * zoo_model_path("resnet20").stat().st_size  # 8-bit weights


def test_quantize_without_data_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["quantize", str(zoo_model_path("resnet20")), "-o", str(tmp_path / "q.onnx")])
    assert result.exit_code == 2 and "--data" in result.stderr
    assert not (tmp_path / "q.onnx").exists()


def test_quantize_refuses_a_model_with_nothing_to_quantize(tmp_path: Path) -> None:
    net = TinyNet("relu_only", input_shape=(3, 32, 32))
    model_path = save_model(net.build(net.node("Relu", ["input"])), tmp_path / "relu.onnx")
    output = tmp_path / "q.onnx"
    result = CliRunner().invoke(cli, ["quantize", str(model_path), "--data", str(demo_data_path()), "-o", str(output)])
    assert result.exit_code == 1
    assert "nothing to quantize" in result.stderr and "Traceback" not in result.output
    assert not output.exists() and list(tmp_path.iterdir()) == [model_path]
