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


def test_profile_calibrates_on_the_search_grid_it_is_given(tmp_path: Path, monkeypatch) -> None:
    """--round-to reaches the table config (its calibration models keep to that grid, as the search's plans do)."""
    from agmc_onnx.cli import profile_cmd

    seen = []

    def profile_model(model, config, progress):
        seen.append(config.round_to)
        raise KeyboardInterrupt  # stop before anything is measured

    monkeypatch.setattr(profile_cmd, "profile_model", profile_model)
    model_path = save_model(tiny_models.conv_bn_relu(), tmp_path / "m.onnx")
    for extra in ([], ["--round-to", "4"]):
        CliRunner().invoke(cli, ["profile", str(model_path), "-o", str(tmp_path / "t.json"), *extra])
    assert seen == [8, 4]


def test_profile_gpu_without_cuda_is_one_clear_error(tmp_path: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return
    model_path = save_model(tiny_models.conv_bn_relu(), tmp_path / "m.onnx")
    result = CliRunner().invoke(cli, ["profile", str(model_path), "--target", "gpu", "-o", str(tmp_path / "t.json")])
    assert result.exit_code == 1 and "CUDAExecutionProvider" in result.stderr
    assert not (tmp_path / "t.json").exists()
