"""``agmc-onnx profile`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import tiny_models
from click.testing import CliRunner

from agmc_onnx.cli.main import cli
from agmc_onnx.io import save_model


def test_profile_prints_staircases_and_writes_json(tmp_path: Path) -> None:
    model_path = save_model(tiny_models.conv_bn_relu(), tmp_path / "m.onnx")
    output = tmp_path / "table.json"
    args = ["profile", str(model_path), "-o", str(output), "--cache-dir", str(tmp_path / "cache"), "--runs", "3"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "fast steps" in result.stdout and "overhead" in result.stdout
    payload = json.loads(output.read_text())
    assert payload["identity"]["precision"] == "fp32" and payload["groups"][0]["fast_counts"]
    assert payload["predicted_full_ms"] > 0


def test_profile_gpu_without_cuda_is_one_clear_error(tmp_path: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return
    model_path = save_model(tiny_models.conv_bn_relu(), tmp_path / "m.onnx")
    result = CliRunner().invoke(cli, ["profile", str(model_path), "--target", "gpu", "-o", str(tmp_path / "t.json")])
    assert result.exit_code == 1 and "CUDAExecutionProvider" in result.stderr
    assert not (tmp_path / "t.json").exists()
