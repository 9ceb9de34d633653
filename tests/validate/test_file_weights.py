"""The oracle reads the loaded model's weights again from its file, so the prepared model can drop them."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tiny_models
from onnx import numpy_helper

from agmc_onnx import validate
from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import ValidationError
from agmc_onnx.file_weights import raw_data_spans
from agmc_onnx.io import load_model, save_model
from agmc_onnx.loaded_model import detach_loaded_model, without_file_weights
from agmc_onnx.plan import uniform_plan
from agmc_onnx.prune import prune_model


def _saved(tmp_path, model, external_data=False):
    path = save_model(model, tmp_path / "model.onnx", external_data=external_data)
    return path, load_model(path)


def _aliased_mlp():
    """An MLP whose second layer reads its weight through an ``Identity`` alias (folded on preparing)."""
    net = tiny_models.TinyNet("aliased_mlp", (64,))
    hidden = net.node("Relu", [net.gemm("input", 64, 128)])
    alias = net.node("Identity", [net.weight(10, 128)])
    return net.build(net.node("Gemm", [hidden, alias, net.const(np.zeros(10, np.float32))], transB=1))


def test_spans_locate_every_initializers_bytes(tmp_path):
    path, model = _saved(tmp_path, tiny_models.residual_chain(batchnorm=True))
    spans, data = raw_data_spans(path), path.read_bytes()
    assert {t.name for t in model.graph.initializer if t.HasField("raw_data")} == spans.keys()
    for tensor in model.graph.initializer:
        if tensor.name in spans:
            offset, length = spans[tensor.name]
            assert data[offset : offset + length] == tensor.raw_data


@pytest.mark.parametrize("build", [tiny_models.residual_chain, _aliased_mlp])
def test_weights_read_from_the_file_are_the_loaded_ones(tmp_path, build):
    path, model = _saved(tmp_path, build())
    analysis = analyze_model(model)
    kept, read = detach_loaded_model(model, analysis), detach_loaded_model(model, analysis, path)
    assert read.from_file is not None and not read.own  # nothing kept in memory until the oracle runs
    expected, weights = kept.weights(analysis.model), read.weights(analysis.model)
    assert weights.keys() == expected.keys()
    for name, values in expected.items():
        assert weights[name].tobytes() == values.tobytes() and weights[name].shape == values.shape
        assert weights[name].flags.writeable  # fresh arrays: the oracle may perturb them where they lie
    assert not np.shares_memory(read.weights(analysis.model)[name], weights[name])


@pytest.mark.parametrize("build", [tiny_models.residual_chain, _aliased_mlp])
def test_the_oracle_runs_on_a_hollow_prepared_model_and_still_catches_a_wrong_weight(tmp_path, build):
    path, model = _saved(tmp_path, build())
    analysis = analyze_model(model)
    loaded = detach_loaded_model(model, analysis, path)
    result = prune_model(analysis.model, uniform_plan(analysis.groups, 0.5), analysis=analysis)
    hollow = without_file_weights(loaded, analysis)
    emptied = [t for t in hollow.model.graph.initializer if t.name in loaded.shared]
    assert emptied and all(not t.raw_data and list(t.dims) for t in emptied)
    assert validate.validate_pruned(loaded, hollow, result.selection, result.model).passed
    weight = next(t for t in result.model.graph.initializer if t.name in loaded.shared and len(t.dims) > 1)
    values = numpy_helper.to_array(weight).copy()
    values.flat[0] += 0.5
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    with pytest.raises(ValidationError, match="differs from the masked original"):
        validate.validate_pruned(loaded, hollow, result.selection, result.model)


def test_a_model_file_changed_after_loading_is_refused(tmp_path):
    path, model = _saved(tmp_path, tiny_models.residual_chain())
    analysis = analyze_model(model)
    loaded = detach_loaded_model(model, analysis, path)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data))  # same bytes, rewritten: the file may not be the one that was read
    os.utime(path, ns=(1, 1))
    with pytest.raises(ValidationError, match="changed on disk"):
        loaded.weights(analysis.model)


def test_weights_in_external_data_stay_in_memory(tmp_path):
    path, model = _saved(tmp_path, _aliased_mlp(), external_data=True)
    analysis = analyze_model(model)
    loaded = detach_loaded_model(model, analysis, path)
    assert loaded.from_file is None and without_file_weights(loaded, analysis) is analysis
    result = prune_model(analysis.model, uniform_plan(analysis.groups, 0.5), analysis=analysis)
    assert validate.validate_pruned(loaded, analysis, result.selection, result.model).passed
