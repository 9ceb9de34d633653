"""``agmc-onnx eval`` and ``agmc-onnx bench`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agmc_onnx.cli.main import cli
from agmc_onnx.models.zoo import demo_data_path, zoo_model_path

RESNET20 = str(zoo_model_path("resnet20"))


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _assert_one_line_error(result, text: str, exit_code: int = 1) -> None:
    assert result.exit_code == exit_code, result.output
    assert text in result.stderr
    assert "Traceback" not in result.output
    if exit_code == 1:
        assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("name", "option"), [("eval", "--data"), ("bench", "--target")])
def test_help_lists_the_options(runner: CliRunner, name: str, option: str) -> None:
    result = runner.invoke(cli, [name, "--help"])
    assert result.exit_code == 0
    assert option in result.stdout and "MODEL" in result.stdout


def _eval_on_demo_data(runner: CliRunner, cache_dir: Path, *options: str):
    args = ["eval", RESNET20, "--data", str(demo_data_path()), *options, "--cache-dir", str(cache_dir)]
    return runner.invoke(cli, args)


def test_eval_json_on_the_demo_data(runner: CliRunner, tmp_path: Path) -> None:
    result = _eval_on_demo_data(runner, tmp_path, "--limit", "200", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["n_images"] == 200 and payload["split"] == "test"
    assert 0.5 < payload["top1"] <= payload["top5"] <= 1.0  # a trained model, far above chance (0.1)
    assert "evaluated 200/200 images" in result.stderr  # progress goes to stderr, never into the JSON


def test_eval_text_reports_top1_and_top5(runner: CliRunner, tmp_path: Path) -> None:
    result = _eval_on_demo_data(runner, tmp_path, "--split", "train", "--limit", "50")
    assert result.exit_code == 0, result.output
    assert "(train, 50 images): top-1" in result.stdout and "top-5" in result.stdout


def test_eval_missing_dataset_is_a_one_line_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["eval", RESNET20, "--data", str(tmp_path / "nowhere")])
    _assert_one_line_error(result, "dataset not found")


def test_eval_bad_mean_values(runner: CliRunner, tmp_path: Path) -> None:
    bad_number = runner.invoke(cli, ["eval", RESNET20, "--data", str(tmp_path), "--mean", "0.5,x,0.5"])
    _assert_one_line_error(bad_number, "Invalid value for '--mean'", exit_code=2)
    wrong_count = runner.invoke(cli, ["eval", RESNET20, "--data", str(demo_data_path()), "--mean", "0.5,0.5"])
    _assert_one_line_error(wrong_count, "needs 3 mean and std values")


def test_bench_json_reports_positive_latency(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["bench", RESNET20, "--min-seconds", "0", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["target"] == "mobile-cpu" and payload["batch_size"] == 1
    assert payload["median_ms"] > 0 and payload["n_runs"] >= 1


def test_bench_vs_reports_a_paired_speedup(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["bench", RESNET20, "--vs", RESNET20, "--rounds", "2", "--target", "edge-cpu"])
    assert result.exit_code == 0, result.output
    assert "over cifar10_resnet20.onnx on edge-cpu (batch 1):" in result.stdout and "95 % CI" in result.stdout


def test_bench_gpu_target_is_a_one_line_error_here(runner: CliRunner) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("a GPU build of onnxruntime is installed")
    _assert_one_line_error(runner.invoke(cli, ["bench", RESNET20, "--target", "gpu"]), "needs CUDAExecutionProvider")


def test_bench_non_onnx_file_is_a_one_line_error(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "notes.onnx").write_text("not a model")
    _assert_one_line_error(runner.invoke(cli, ["bench", str(tmp_path / "notes.onnx")]), "onnxruntime cannot load")
