"""Model files: external data, atomic writes, clear errors."""

from __future__ import annotations

import onnx
import pytest
import tiny_models

from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import ModelLoadError
from agmc_onnx.graph.prepare import infer_static_shapes
from agmc_onnx.graph.skeleton import weightless_copy
from agmc_onnx.io import load_model, model_file_size, save_model


def test_external_data_is_read(tmp_path):
    path = tmp_path / "external.onnx"
    onnx.save(  # noqa: TID251 - the test writes external data the way other tools do
        tiny_models.residual_chain(),
        str(path),
        save_as_external_data=True,  # noqa: TID251
        all_tensors_to_one_file=True,
        location="external.onnx.data",
        size_threshold=0,
    )
    assert (tmp_path / "external.onnx.data").exists()
    analysis = analyze_model(load_model(path))
    assert len(analysis.prunable_groups) == 5


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = save_model(tiny_models.conv_bn_relu(), tmp_path / "sub" / "model.onnx")
    assert path.exists() and [p.name for p in path.parent.iterdir()] == ["model.onnx"]


def test_old_opset_is_refused_with_a_next_step(tmp_path):
    model = tiny_models.conv_bn_relu()
    model.opset_import[0].version = 9
    path = tmp_path / "old.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelLoadError, match="opset 9.*convert_version"):
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
