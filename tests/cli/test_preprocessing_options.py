"""The preprocessing options every data-reading command shares, and the label-free paths of eval and finetune."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_models import TinyNet

from agmc_onnx.cli.main import cli


@pytest.mark.parametrize("command", ["compress", "search", "finetune", "eval", "quantize"])
def test_every_data_command_takes_the_preprocessing_options(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    for option in ("--layout", "--color", "--size", "--scale", "--mean", "--std"):
        assert option in result.output, (command, option)


@pytest.fixture()
def nhwc_model(tmp_path):
    """A model taking raw 0-255 N×H×W×C pixels (a Keras export), without preprocessing metadata."""
    net = TinyNet("nhwc", input_shape=(8, 8, 3))
    x = net.node("Transpose", ["input"], perm=[0, 3, 1, 2])
    x = net.node("Relu", [net.bn(net.conv(x, 3, 8), 8)])
    x = net.node("Flatten", [net.node("GlobalAveragePool", [x])])
    path = tmp_path / "nhwc.onnx"
    path.write_bytes(net.build(net.gemm(x, 8, 3)).SerializeToString())
    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "unlabelled.npz", x=images)
    return tmp_path, path


def test_eval_without_labels_measures_fidelity_to_a_reference_and_refuses_top1(nhwc_model) -> None:
    tmp_path, model = nhwc_model
    data = str(tmp_path / "unlabelled.npz")
    raw = ["--layout", "NHWC", "--scale", "1", "--size", "8,8"]
    same = CliRunner().invoke(cli, ["eval", str(model), "--data", data, "--reference", str(model), *raw])
    assert same.exit_code == 0, same.output
    assert "fidelity to the reference (top-1 agreement) on 40 inputs" in same.output and "100.00 %" in same.output
    refused = CliRunner().invoke(cli, ["eval", str(model), "--data", data, *raw])
    assert refused.exit_code == 1 and "has no labels; give --reference ORIGINAL" in refused.output
    wrong = CliRunner().invoke(cli, ["eval", str(model), "--data", data, "--layout", "NCHW", "--reference", str(model)])
    assert wrong.exit_code == 1 and "input shape ['batch', 8, 8, 3]: expected NCHW with 1 or 3 channels" in wrong.output


def test_finetune_without_labels_distils_and_needs_the_original(nhwc_model) -> None:
    tmp_path, model = nhwc_model
    args = ["finetune", str(model), "--data", str(tmp_path / "unlabelled.npz"), "-o", str(tmp_path / "ft.onnx")]
    args += ["--layout", "NHWC", "--batch-size", "16", "--device", "cpu"]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1 and "give --distill ORIGINAL" in refused.output
    result = CliRunner().invoke(cli, [*args, "--distill", str(model), "--val-fraction", "0.2"])
    assert result.exit_code == 0, result.output
    assert "(no labels)" in result.output and "val fidelity" in result.output and (tmp_path / "ft.onnx").is_file()


def test_quantize_without_labels_scores_int8_by_fidelity_to_fp32(nhwc_model) -> None:
    tmp_path, model = nhwc_model
    images = np.random.default_rng(1).integers(0, 256, (1040, 8, 8, 3), dtype=np.uint8)  # 1,000 held out as test
    np.savez(tmp_path / "more.npz", x=images)
    args = ["quantize", str(model), "--data", str(tmp_path / "more.npz"), "-o", str(tmp_path / "q.onnx")]
    args += ["--layout", "NHWC", "--scale", "1", "--format", "qdq", "--calibration-images", "16", "--rounds", "2"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "test fidelity of INT8 to fp32 (top-1 agreement" in result.output and (tmp_path / "q.onnx").is_file()
