"""``inspect`` and ``prune`` from the command line, including every kind of bad input."""

from __future__ import annotations

import hashlib
import json
import re

import onnx
import pytest
import tiny_models
from click.testing import CliRunner
from trained_models import shared_model_path

from agmc_onnx.cli.main import cli


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture()
def resnet20(tmp_path):
    path = tmp_path / "resnet20.onnx"
    path.write_bytes(shared_model_path("resnet20").read_bytes())
    return path


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_clean_failure(result, message: str) -> None:
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("command", [[], ["inspect"], ["prune"]])
def test_help(runner, command):
    result = runner.invoke(cli, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_inspect_lists_groups_and_totals(runner, resnet20):
    result = runner.invoke(cli, ["inspect", str(resnet20)])
    assert result.exit_code == 0
    assert "13 channel groups (12 prunable)" in result.output
    assert "prunable MACs 100.0%" in result.output


def test_inspect_json(runner, resnet20):
    result = runner.invoke(cli, ["inspect", str(resnet20), "--json"])
    data = json.loads(result.output)
    assert data["groups"] == 13 and data["channel_groups"][-1]["prunable"] is False
    assert "graph output" in data["channel_groups"][-1]["status"]


def test_prune_writes_smaller_model(runner, resnet20, tmp_path):
    out = tmp_path / "pruned.onnx"
    before = _digest(resnet20)
    result = runner.invoke(cli, ["prune", str(resnet20), "--keep", "0.5", "--round-to", "8", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "oracle passed" in result.output and "MACs" in result.output
    assert out.stat().st_size < 0.4 * resnet20.stat().st_size
    assert _digest(resnet20) == before
    onnx.checker.check_model(str(out), full_check=True)


def test_prune_with_ratios_file(runner, resnet20, tmp_path):
    ratios = tmp_path / "ratios.json"
    ratios.write_text(json.dumps({"keep_ratios": {"g0": 0.5, "g1": 0.25}, "round_to": 4}))
    out = tmp_path / "pruned.onnx"
    result = runner.invoke(cli, ["prune", str(resnet20), "--ratios", str(ratios), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["pruned_groups"] == 2 and summary["macs"][1] < summary["macs"][0]


def test_inspect_shows_removable_branches_and_what_each_removes(runner, resnet20):
    result = runner.invoke(cli, ["inspect", str(resnet20)])
    assert result.exit_code == 0
    assert "9 removable residual branches" in result.output
    assert "prunable, removable (b0)" in result.output  # g1, the first block's inner group
    assert re.search(r"b0\s+g1\s+6 of 73\s+11\.6%\s+/layers/layers\.0/Add", result.output)
    data = json.loads(runner.invoke(cli, ["inspect", str(resnet20), "--json"]).output)
    first = data["residual_branches"][0]
    assert first["groups"] == ["g1"] and first["operators"] == 6 and first["macs"] > 0
    assert data["channel_groups"][0]["removable_branch"] is None


def test_prune_zero_ratio_removes_the_branch_and_passes_the_oracle(runner, resnet20, tmp_path):
    ratios = _write_ratios(tmp_path, {"g1": 0, "g10": 0.0, "g0": 0.5})
    out = tmp_path / "shallower.onnx"
    result = runner.invoke(cli, ["prune", str(resnet20), "--ratios", str(ratios), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 residual branches removed, oracle passed" in result.output
    nodes = onnx.load(str(out)).graph.node
    assert len(nodes) == 73 - 12
    left = [n.op_type for n in nodes if n.name.startswith(("/layers/layers.0/", "/layers/layers.7/"))]
    assert left == ["Relu", "Relu"]  # only the activations after each bypassed Add remain


def _write_ratios(tmp_path, content: dict):
    path = tmp_path / "ratios.json"
    path.write_text(json.dumps(content))
    return path


def _missing_external_data(folder):
    path = folder / "external.onnx"
    tiny_models.save_with_external_data(tiny_models.residual_chain(), path, "weights.bin")
    (folder / "weights.bin").unlink()
    return path


def _opset_6(folder):
    model = tiny_models.conv_bn_relu()
    model.opset_import[0].version = 6
    (folder / "opset6.onnx").write_bytes(model.SerializeToString())
    return folder / "opset6.onnx"


def _shuffle_unit(folder):
    (folder / "shuffle.onnx").write_bytes(tiny_models.shufflenet_v1_unit().SerializeToString())
    return folder / "shuffle.onnx"


@pytest.mark.parametrize(
    "make_model, extra_args, message",
    [
        (lambda p: p / "missing.onnx", ["--keep", "0.5"], "model file not found"),
        (
            lambda p: (p / "notes.onnx").write_text("not a model") and p / "notes.onnx",
            ["--keep", "0.5"],
            "is not a readable ONNX model",
        ),
        (
            lambda p: (p / "empty.onnx").write_bytes(b"") == 0 and p / "empty.onnx",
            ["--keep", "0.5"],
            "is empty",
        ),
        (
            lambda p: (
                (p / "single.onnx").write_bytes(tiny_models.no_prunable_group().SerializeToString())
                and p / "single.onnx"
            ),
            ["--keep", "0.5"],
            "no prunable channel group",
        ),
        (_missing_external_data, ["--keep", "0.5"], "external data file missing: weights.bin"),
        (_shuffle_unit, ["--ratios", "{ratios_shuffle_stream_zero}"], "cannot have keep ratio 0: it is tied"),
        (_opset_6, ["--keep", "0.5"], "opsets from 7 on are supported"),
        (None, ["--keep", "0"], "not in the range"),
        (None, ["--keep", "1.5"], "not in the range"),
        (None, ["--ratios", "{ratios_unknown}"], "unknown group 'g99'"),
        (None, ["--ratios", "{ratios_bad_value}"], "must be in [0, 1]"),
        (None, ["--ratios", "{ratios_stream_zero}"], "group 'g0' (/conv1/Conv) cannot have keep ratio 0: it is tied"),
        (None, ["--ratios", "{ratios_head_zero}"], "group 'g12' (/fc/Gemm) cannot have keep ratio 0: it is pinned"),
        (None, ["--ratios", "{ratios_pinned}"], "cannot be pruned"),
        (None, ["--ratios", "{ratios_missing}"], "cannot read ratios file"),
        (None, [], "exactly one of --keep or --ratios"),
    ],
    ids=[
        "missing",
        "not-onnx",
        "empty",
        "no-prunable-group",
        "missing-external-data",
        "zero-for-grouped-shuffle-stream",
        "opset-6",
        "keep-zero",
        "keep-above-one",
        "unknown-group",
        "ratio-out-of-range",
        "zero-for-residual-stream",
        "zero-for-pinned-head",
        "pinned-group",
        "missing-ratios",
        "no-plan",
    ],
)
def test_bad_input_fails_cleanly_and_writes_nothing(runner, resnet20, tmp_path, make_model, extra_args, message):
    model = make_model(tmp_path) if make_model else resnet20
    files = {
        "{ratios_unknown}": {"g99": 0.5},
        "{ratios_bad_value}": {"g0": 1.5},
        "{ratios_pinned}": {"g12": 0.5},
        "{ratios_stream_zero}": {"g1": 0, "g0": 0},
        "{ratios_head_zero}": {"g12": 0},
        "{ratios_shuffle_stream_zero}": {"g0": 0},
    }
    args = []
    for arg in extra_args:
        if arg in files:
            arg = str(_write_ratios(tmp_path, files[arg]))
        elif arg == "{ratios_missing}":
            arg = str(tmp_path / "nope.json")
        args.append(arg)
    before = _digest(model) if model.exists() else None
    out = tmp_path / "out.onnx"
    result = runner.invoke(cli, ["prune", str(model), *args, "-o", str(out)])
    _assert_clean_failure(result, message)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.onnx")]
    if before is not None:
        assert _digest(model) == before


def test_truncated_model_fails_cleanly(runner, resnet20, tmp_path):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(resnet20.read_bytes()[: resnet20.stat().st_size // 2])
    result = runner.invoke(cli, ["inspect", str(truncated)])
    _assert_clean_failure(result, "not a readable ONNX model")


def test_output_may_not_overwrite_input(runner, resnet20):
    result = runner.invoke(cli, ["prune", str(resnet20), "--keep", "0.5", "-o", str(resnet20)])
    _assert_clean_failure(result, "must not overwrite the input")


def test_calibrate_restores_accuracy_lost_to_stale_batchnorm_statistics(runner, resnet20, tmp_path):
    from trained_models import REPO_ROOT

    from agmc_onnx.data import load_split, spec_from_model
    from agmc_onnx.evaluate import evaluate_accuracy
    from agmc_onnx.io import load_model

    demo = REPO_ROOT / "models" / "zoo"
    plain, calibrated = tmp_path / "plain.onnx", tmp_path / "calibrated.onnx"
    base = ["prune", str(resnet20), "--keep", "0.75", "--round-to", "4"]
    assert runner.invoke(cli, [*base, "-o", str(plain)]).exit_code == 0
    result = runner.invoke(cli, [*base, "--calibrate", str(demo), "-o", str(calibrated), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["batchnorm_recalibrated"] is True
    spec = spec_from_model(load_model(resnet20))
    test = load_split(demo, "test", spec)
    top1 = {p.stem: evaluate_accuracy(load_model(p), test, spec).top1 for p in (plain, calibrated)}
    assert top1["calibrated"] > top1["plain"] + 0.1


def test_old_opset_model_is_converted_and_says_so(runner, tmp_path):
    import onnx.version_converter

    model = tiny_models.residual_chain()
    model.opset_import[0].version = 11  # Conv, Relu and Add read the same at 11 and 17
    path = tmp_path / "opset9.onnx"
    path.write_bytes(onnx.version_converter.convert_version(model, 9).SerializeToString())
    result = runner.invoke(cli, ["inspect", str(path)])
    assert result.exit_code == 0 and "opset 9 in the file, converted on load to opset 14" in result.output
    out = tmp_path / "pruned.onnx"
    result = runner.invoke(cli, ["prune", str(path), "--keep", "0.5", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "opset 9 of the input was converted to 14 on load" in result.output and "oracle passed" in result.output


def test_text_encoder_with_token_ids_prunes_from_the_command_line(runner, tmp_path):
    path = tmp_path / "text.onnx"
    path.write_bytes(tiny_models.token_encoder().SerializeToString())
    out = tmp_path / "pruned.onnx"
    result = runner.invoke(cli, ["prune", str(path), "--keep", "0.5", "-o", str(out)])
    assert result.exit_code == 0 and "oracle passed" in result.output, result.output


def test_grouped_convolutions_behind_a_shuffle_prune_from_the_command_line(runner, tmp_path):
    """ShuffleNet V1: grouped 1×1 convolutions around a channel shuffle prune inside their groups."""
    path = _shuffle_unit(tmp_path)
    result = runner.invoke(cli, ["inspect", str(path)])
    assert result.exit_code == 0 and "prunable, 2 units always kept" in result.output, result.output
    out = tmp_path / "pruned.onnx"
    result = runner.invoke(cli, ["prune", str(path), "--keep", "0.5", "-o", str(out)])
    assert result.exit_code == 0 and "2 groups pruned, oracle passed" in result.output, result.output
