"""Every command that takes a model refuses a missing, non-ONNX or truncated one alike: exit 1 and one
error line on stderr naming the file. A missing file is refused before any other work, with the loader's words;
an unreadable one by whatever reads it first (the loader, or onnxruntime for ``bench``, which times the
file as it is)."""

from __future__ import annotations

import pytest
import tiny_models
from click.testing import CliRunner

from agmc_onnx.cli.main import cli

# Each command with the least else it needs; {model} is the model under test, {good} a valid model.
COMMANDS = {
    "inspect": ["inspect", "{model}"],
    "prune": ["prune", "{model}", "--keep", "0.5", "-o", "{out}/pruned.onnx"],
    "search": ["search", "{model}", "--data", "{out}", "--flops", "0.5", "-o", "{out}/plan.json"],
    "finetune": ["finetune", "{model}", "--data", "{out}", "-o", "{out}/tuned.onnx"],
    "finetune --distill": ["finetune", "{good}", "--distill", "{model}", "--data", "{out}", "-o", "{out}/t.onnx"],
    "eval": ["eval", "{model}", "--data", "{out}"],
    "eval --reference": ["eval", "{good}", "--reference", "{model}", "--data", "{out}"],
    "bench": ["bench", "{model}"],
    "bench --vs": ["bench", "{good}", "--vs", "{model}"],
    "profile": ["profile", "{model}", "-o", "{out}/table.json"],
    "quantize": ["quantize", "{model}", "--data", "{out}", "-o", "{out}/int8.onnx"],
    "compress": ["compress", "{model}", "--data", "{out}", "--flops", "0.5", "-o", "{out}/compressed"],
}


def _missing(folder):
    return folder / "missing.onnx"


def _not_onnx(folder):
    (folder / "notes.onnx").write_text("not a model")
    return folder / "notes.onnx"


def _truncated(folder):
    data = tiny_models.conv_bn_relu().SerializeToString()
    (folder / "truncated.onnx").write_bytes(data[: len(data) // 2])
    return folder / "truncated.onnx"


BAD_MODELS = {
    "missing": (_missing, "model file not found: {model}"),
    "not-onnx": (_not_onnx, "{model} is not a readable ONNX model"),
    "truncated": (_truncated, "{model} is not a readable ONNX model"),
}
BENCH_UNREADABLE = "onnxruntime cannot load {model}: "


def test_every_command_that_takes_a_model_is_covered():
    commands = cli.list_commands(None)
    takes_model = {name for name in commands if "MODEL" in CliRunner().invoke(cli, [name, "--help"]).output}
    assert takes_model == {name.split()[0] for name in COMMANDS}


@pytest.mark.parametrize("bad", BAD_MODELS)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_bad_model_is_one_line_and_exit_1(tmp_path, command, bad):
    make, message = BAD_MODELS[bad]
    good = tmp_path / "good.onnx"
    good.write_bytes(tiny_models.conv_bn_relu().SerializeToString())
    model = make(tmp_path)
    args = [a.format(model=model, good=good, out=tmp_path) for a in COMMANDS[command]]
    result = CliRunner().invoke(cli, args)
    if command.startswith("bench") and bad != "missing":
        message = BENCH_UNREADABLE
    assert result.exit_code == 1, result.output
    *announced, error = result.stderr.strip().splitlines()  # bench --vs says what it is about to measure
    assert error.startswith("Error: ") and message.format(model=model) in error
    assert not any(line.startswith("Error") for line in announced) and "Traceback" not in result.output
