"""``agmc-onnx finetune`` end to end on a tiny synthetic dataset, --help, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from agmc_onnx.cli.main import cli
from agmc_onnx.io import load_model, save_model


def _tiny_model(path: Path) -> Path:
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm on 3×8×8 input, 3 classes, with metadata."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.standard_normal((6, 3, 3, 3)) * 0.3).astype(np.float32), "conv.weight"),
        numpy_helper.from_array((rng.standard_normal((3, 6)) * 0.3).astype(np.float32), "fc.weight"),
        numpy_helper.from_array(np.zeros(3, np.float32), "fc.bias"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(
        model,
        {
            "preprocessing": '{"layout": "NCHW", "color": "RGB", "size": [8, 8], '
            '"scale": 0.00392156862745098, "mean": [0.5, 0.5, 0.5], '
            '"std": [0.25, 0.25, 0.25]}'
        },
    )
    return save_model(model, path)


def _tiny_data(path: Path, n_images: int = 96) -> Path:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, n_images)
    images = rng.integers(40, 160, (n_images, 8, 8, 3))
    images[np.arange(n_images), :, :, labels] += 70
    np.savez(path, x=images.astype(np.uint8), y=labels.astype(np.int64))
    return path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_help_lists_the_options(runner):
    result = runner.invoke(cli, ["finetune", "--help"])
    assert result.exit_code == 0
    for option in ("--data", "--epochs", "--distill", "--batch-size", "--lr", "--resume", "--output"):
        assert option in result.stdout


def test_finetune_writes_the_same_graph_with_new_numbers(runner, tmp_path):
    model_path = _tiny_model(tmp_path / "tiny.onnx")
    data_path = _tiny_data(tmp_path / "tiny_train.npz", 192)
    out = tmp_path / "out" / "tuned.onnx"
    args = [
        "finetune",
        str(model_path),
        "--data",
        str(data_path),
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--lr",
        "0.3",
        "--val-fraction",
        "0.25",
        "--distill",
        str(model_path),
        "--distill-weight",
        "0.2",
        "--cache-dir",
        str(tmp_path / "cache"),
        "-o",
        str(out),
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "epoch 2/2" in result.stderr and "wrote" in result.stdout
    assert "best epoch 0/" not in result.stdout  # the synthetic classes are learnt within two epochs
    original, tuned = load_model(model_path), load_model(out)
    assert list(tuned.graph.node) == list(original.graph.node)
    assert tuned.metadata_props == original.metadata_props
    assert tuned.graph.initializer != original.graph.initializer
    assert (tmp_path / "out" / "tuned.onnx.ckpt").exists()
    # --resume with every epoch already done reproduces the same model from the checkpoint.
    again = tmp_path / "out" / "again.onnx"
    resumed = runner.invoke(cli, args[:-1] + [str(again), "--resume", "--checkpoint", str(out) + ".ckpt"])
    assert resumed.exit_code == 0, resumed.output
    assert "epoch 1/2" not in resumed.stderr
    assert onnx.load(str(again)).graph == tuned.graph  # noqa: TID251


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (
            lambda tmp: [str(tmp / "not_onnx.onnx"), "--data", str(tmp / "d_train.npz")],
            "not a readable ONNX model",
        ),
        (
            lambda tmp: [str(tmp / "tiny.onnx"), "--data", str(tmp / "d_train.npz"), "--mean", "0.5,0.5"],
            "needs 3 mean and std values",
        ),
        (lambda tmp: [str(tmp / "tiny.onnx"), "--data", str(tmp / "missing")], "dataset not found"),
    ],
)
def test_bad_input_is_one_line_without_traceback(runner, tmp_path, make_args, message):
    _tiny_model(tmp_path / "tiny.onnx")
    _tiny_data(tmp_path / "d_train.npz", 8)
    (tmp_path / "not_onnx.onnx").write_text("hello")
    result = runner.invoke(cli, ["finetune", *make_args(tmp_path), "-o", str(tmp_path / "out.onnx")])
    assert result.exit_code == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize(("given", "expected"), [([], None), (["--feature-distill-weight", "0"], 0.0)])
def test_the_feature_distillation_weight_reaches_the_training(runner, tmp_path, monkeypatch, given, expected):
    import agmc_onnx.cli.finetune_cmd as finetune_cmd
    from agmc_onnx.finetune import FinetuneConfig

    seen = []
    real = finetune_cmd.finetune
    monkeypatch.setattr(finetune_cmd, "finetune", lambda *a, **k: seen.append(a[4]) or real(*a, **k))
    model_path = _tiny_model(tmp_path / "tiny.onnx")
    data_path = _tiny_data(tmp_path / "tiny_train.npz")
    args = ["finetune", str(model_path), "--data", str(data_path), "--distill", str(model_path), *given]
    result = runner.invoke(cli, [*args, "--cache-dir", str(tmp_path / "c"), "-o", str(tmp_path / "t.onnx")])
    assert result.exit_code == 0, result.output
    default = FinetuneConfig().feature_distill_weight
    assert seen[0].feature_distill_weight == (default if expected is None else expected)
