"""Every failure branch of written-model validation, through ``prune`` on the command line.

The pruning step is made to write a broken model (one corruption per branch of
``check_written_model`` and of the oracle); the CLI must exit 1 with that branch's one-line message,
no traceback, and no output file.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import tiny_models
from click.testing import CliRunner
from onnx import helper, numpy_helper

from agmc_onnx import prune as prune_module
from agmc_onnx.cli.main import cli
from agmc_onnx.errors import ValidationError
from agmc_onnx.validate import check_written_model


def _checker_failure(model: onnx.ModelProto) -> None:
    model.graph.node.append(helper.make_node("Relu", ["no_such_tensor"], ["dangling"], name="dangling"))


def _unloadable(model: onnx.ModelProto) -> None:
    model.opset_import.append(helper.make_opsetid("com.example.missing", 1))
    output = model.graph.output[0].name
    model.graph.node.append(helper.make_node("Frobnicate", [output], ["frob"], domain="com.example.missing"))


def _outputs_changed(model: onnx.ModelProto) -> None:
    """An intermediate tensor became a second graph output."""
    model.graph.output.append(helper.make_tensor_value_info(model.graph.node[0].output[0], 1, ["batch", "c", "h", "w"]))


def _fails_at_run_time(model: onnx.ModelProto) -> None:
    """A Reshape no batch size can satisfy, on the way to the output: loads, then fails when run."""
    last = model.graph.node[-1]
    moved = last.output[0] + "_before_reshape"
    model.graph.initializer.append(numpy_helper.from_array(np.array([-1, 7], np.int64), "odd_shape"))
    model.graph.initializer.append(numpy_helper.from_array(np.array([-1, 4, 8, 8], np.int64), "back_shape"))
    odd = helper.make_node("Reshape", [moved, "odd_shape"], [moved + "_odd"], name="odd_reshape")
    back = helper.make_node("Reshape", [moved + "_odd", "back_shape"], [last.output[0]], name="back_reshape")
    last.output[0] = moved
    model.graph.node.extend([odd, back])


def _wrong_wiring(model: onnx.ModelProto) -> None:
    """Swap two input channels of the last convolution's weight: valid shapes, wrong function."""
    weight_name = model.graph.node[-1].input[1]
    init = next(i for i in model.graph.initializer if i.name == weight_name)
    values = numpy_helper.to_array(init).copy()
    values[:, [0, 1]] = values[:, [1, 0]]
    init.CopyFrom(numpy_helper.from_array(values, weight_name))


BRANCHES = {
    "checker": (_checker_failure, "written model fails the ONNX checker"),
    "onnxruntime-load": (_unloadable, "onnxruntime cannot load the written model"),
    "outputs-changed": (_outputs_changed, "outputs changed"),
    "onnxruntime-run": (_fails_at_run_time, "onnxruntime cannot run the written model"),
    "oracle": (_wrong_wiring, "pruned model differs from the masked original on"),
}


@pytest.fixture()
def corrupting_prune(monkeypatch):
    """Make the pruning step return a model broken by ``corrupt`` (the rest of ``prune`` stays real)."""

    def install(corrupt):
        real = prune_module.apply_selection

        def broken(analysis, selection):
            model, stats = real(analysis, selection)
            copy = onnx.ModelProto()
            copy.CopyFrom(model)
            corrupt(copy)
            return copy, stats

        monkeypatch.setattr(prune_module, "apply_selection", broken)

    return install


@pytest.mark.parametrize("branch", sorted(BRANCHES))
def test_prune_exits_1_with_the_branch_message_and_writes_nothing(branch, corrupting_prune, tmp_path):
    corrupt, message = BRANCHES[branch]
    model = tmp_path / "model.onnx"
    model.write_bytes(tiny_models.conv_bn_relu().SerializeToString())
    out = tmp_path / "pruned.onnx"
    corrupting_prune(corrupt)
    result = CliRunner().invoke(cli, ["prune", str(model), "--keep", "0.5", "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize("branch", ["checker", "onnxruntime-load", "outputs-changed"])
def test_check_written_model_branches_directly(branch):
    corrupt, message = BRANCHES[branch]
    original = tiny_models.conv_bn_relu()
    written = onnx.ModelProto()
    written.CopyFrom(original)
    check_written_model(original, written)
    corrupt(written)
    with pytest.raises(ValidationError, match=message):
        check_written_model(original, written)


def test_an_output_that_lost_its_static_channel_count_is_refused():
    original = tiny_models.conv_bn_relu()
    written = onnx.ModelProto()
    written.CopyFrom(original)
    written.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "channels"
    with pytest.raises(ValidationError, match="outputs changed"):
        check_written_model(original, written)
