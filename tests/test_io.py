"""Model files: external data, atomic writes, clear errors."""

from __future__ import annotations

import onnx
import pytest
import tiny_models

from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import ModelLoadError
from agmc_onnx.io import load_model, save_model


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
