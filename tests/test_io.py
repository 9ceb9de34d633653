"""Model files: external data, atomic writes, clear errors."""

from __future__ import annotations

import onnx
import onnx.version_converter
import pytest
import tiny_models

from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import ModelLoadError
from agmc_onnx.graph.prepare import infer_static_shapes
from agmc_onnx.graph.skeleton import weightless_copy
from agmc_onnx.io import load_model, model_file_size, save_model


def test_external_data_is_read(tmp_path):
    path = tmp_path / "external.onnx"
    tiny_models.save_with_external_data(tiny_models.residual_chain(), path, "external.onnx.data")
    assert (tmp_path / "external.onnx.data").exists()
    analysis = analyze_model(load_model(path))
    assert len(analysis.prunable_groups) == 5


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = save_model(tiny_models.conv_bn_relu(), tmp_path / "sub" / "model.onnx")
    assert path.exists() and [p.name for p in path.parent.iterdir()] == ["model.onnx"]


def _ir3_opset8(model: onnx.ModelProto) -> onnx.ModelProto:
    """The form of old model-zoo files: opset 8, IR version 3, every initializer listed as a graph input."""
    model.opset_import[0].version = 11  # Conv, Relu and Add read the same at 11 and 17
    old = onnx.version_converter.convert_version(model, 8)
    old.ir_version = 3
    for init in old.graph.initializer:
        old.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    onnx.checker.check_model(old, full_check=True)
    return old


def test_old_opset_is_converted_on_load_and_ir3_is_honoured_when_written(tmp_path):
    from agmc_onnx.graph.versions import CONVERTED_OPSET, converted_from_opset, default_opset
    from agmc_onnx.plan import uniform_plan
    from agmc_onnx.prune import prune_model
    from agmc_onnx.validate import validate_pruned

    path = tmp_path / "old.onnx"
    path.write_bytes(_ir3_opset8(tiny_models.residual_chain()).SerializeToString())
    model = load_model(path)
    assert default_opset(model) == CONVERTED_OPSET and converted_from_opset(model) == 8
    analysis = analyze_model(model)
    result = prune_model(model, uniform_plan(analysis.groups, 0.5), analysis=analysis)
    assert validate_pruned(model, analysis, result.selection, result.model).passed
    written = onnx.load(str(save_model(result.model, tmp_path / "pruned.onnx")))  # noqa: TID251
    assert written.ir_version == 3
    assert {i.name for i in written.graph.initializer} <= {i.name for i in written.graph.input}
    onnx.checker.check_model(written, full_check=True)


def test_recent_opset_is_not_converted(tmp_path):
    from agmc_onnx.graph.versions import converted_from_opset

    path = save_model(tiny_models.conv_bn_relu(), tmp_path / "model.onnx")
    model = load_model(path)
    assert model.opset_import[0].version == 17 and converted_from_opset(model) is None


def test_opset_older_than_the_converter_is_refused(tmp_path):
    model = tiny_models.conv_bn_relu()
    model.opset_import[0].version = 6
    path = tmp_path / "old.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelLoadError, match="opset 6; opsets from 7 on are supported"):
        load_model(path)


def test_missing_external_data_file_is_one_message(tmp_path):
    path = tmp_path / "external.onnx"
    tiny_models.save_with_external_data(tiny_models.residual_chain(), path, "weights.bin")
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ModelLoadError, match="external data file missing: weights.bin"):
        load_model(path)


def test_directory_is_not_a_model(tmp_path):
    with pytest.raises(ModelLoadError, match="got a directory"):
        load_model(tmp_path)


@pytest.mark.parametrize("build", [tiny_models.residual_chain, tiny_models.gemm_chain, onnx.ModelProto])
def test_model_file_size_is_the_serialized_size_without_serialising(build):
    model = build()
    assert model_file_size(model) == len(model.SerializeToString())


def test_shape_inference_and_checker_never_see_the_weights_bytes():
    model = tiny_models.residual_chain()
    skeleton, moved = weightless_copy(model)
    assert moved and all(t.name not in moved for t in skeleton.graph.initializer)
    assert {t.name for t in model.graph.initializer} - moved == {t.name for t in skeleton.graph.initializer}
    assert len(skeleton.SerializeToString()) < len(model.SerializeToString()) / 4
    shapes = infer_static_shapes(model, batch_size=2)
    assert all(out in shapes for node in model.graph.node for out in node.output)
    assert shapes[model.graph.output[0].name] == (2, 4, 8, 8)
    assert all(shapes[t.name] == tuple(t.dims) for t in model.graph.initializer)
    onnx.checker.check_model(skeleton, full_check=True)
