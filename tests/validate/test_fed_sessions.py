"""The oracle's memory shape: sessions built from weightless skeletons, weights fed as arrays, no model held twice."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import tiny_models
from onnx import numpy_helper

import agmc_onnx.fed as fed
from agmc_onnx import ulp, validate
from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import ValidationError
from agmc_onnx.io import model_file_size
from agmc_onnx.loaded_model import detach_loaded_model
from agmc_onnx.plan import uniform_plan
from agmc_onnx.prune import prune_model


def _wide_mlp():
    net = tiny_models.TinyNet("wide_mlp", (256,))
    return net.build(net.gemm(net.node("Relu", [net.gemm("input", 256, 512)]), 512, 10))


def test_oracle_sessions_hold_no_weights(monkeypatch):
    model = _wide_mlp()
    sizes: list[int] = []
    real = ort.InferenceSession

    def recording(source, *args, **kwargs):
        sizes.append(len(source) if isinstance(source, bytes) else -1)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(fed.ort, "InferenceSession", recording)
    analysis = analyze_model(model)
    result = prune_model(model, uniform_plan(analysis.groups, 0.5), analysis=analysis)
    report = validate.validate_pruned(model, analysis, result.selection, result.model)
    assert report.passed
    assert len(sizes) >= 3 and -1 not in sizes  # reference, perturbed reference, pruned model
    assert model_file_size(model) > 500_000 and max(sizes) < 20_000


def test_prepared_model_is_the_loaded_one_only_when_preparing_changes_nothing():
    plain = tiny_models.conv_bn_relu()
    assert analyze_model(plain).model is plain
    aliased = tiny_models.aliased_weights()  # an Identity alias gets folded
    analysis = analyze_model(aliased)
    assert analysis.model is not aliased
    assert len(analysis.model.graph.node) < len(aliased.graph.node)
    result = prune_model(aliased, uniform_plan(analysis.groups, 0.5), analysis=analysis)
    assert validate.validate_pruned(aliased, analysis, result.selection, result.model).passed


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_one_ulp_is_nextafter_with_one_coin_per_element(monkeypatch, dtype):
    monkeypatch.setattr(ulp, "_CHUNK", 7)  # several chunks: the coin stream must run on across them
    info = np.finfo(dtype)
    values = np.concatenate(
        [np.random.default_rng(1).standard_normal(40), [0.0, -0.0] * 4 + [info.max, -info.max, info.smallest_subnormal]]
    ).astype(dtype)
    one_ulp = ulp.OneUlp(np.random.default_rng(3))
    first, second = one_ulp(values[:13].reshape(1, 13)), one_ulp(values[13:].reshape(2, 19))
    moved = np.concatenate([first.reshape(-1), second.reshape(-1)])
    words = np.random.default_rng(3).integers(0, 1 << 32, size=3, dtype=np.uint32)  # 32 coins a word
    down = np.unpackbits(words.view(np.uint8), bitorder="little")[np.r_[0:13, 32:70]].astype(bool)
    assert 0.25 < down.mean() < 0.75
    with np.errstate(over="ignore"):
        expected = np.nextafter(values, np.where(down, -np.inf, np.inf).astype(dtype))
    np.testing.assert_array_equal(moved.view(f"u{values.itemsize}"), expected.view(f"u{values.itemsize}"))


def _aliased_wide_mlp():
    """A wide MLP whose second layer reads its weight through an ``Identity`` alias (folded on preparing)."""
    net = tiny_models.TinyNet("aliased_wide_mlp", (256,))
    hidden = net.node("Relu", [net.gemm("input", 256, 512)])
    alias = net.node("Identity", [net.weight(10, 512)])
    return net.build(net.node("Gemm", [hidden, alias, net.const(np.zeros(10, np.float32))], transB=1))


def test_detached_loaded_model_validates_without_the_loaded_model():
    model = _aliased_wide_mlp()
    analysis = analyze_model(model)
    assert analysis.model is not model  # the alias was folded: two models
    loaded = detach_loaded_model(model, analysis)
    assert loaded.shared and not loaded.is_prepared
    del model  # what the prune command does
    result = prune_model(analysis.model, uniform_plan(analysis.groups, 0.5), analysis=analysis)
    assert validate.validate_pruned(loaded, analysis, result.selection, result.model).passed


def test_a_prepared_weight_that_differs_from_the_loaded_one_fails_the_folding_check():
    model = _aliased_wide_mlp()
    analysis = analyze_model(model)
    first = analysis.model.graph.initializer[0]  # the first layer's weight, shared by name
    values = numpy_helper.to_array(first).copy()
    values.flat[0] += 1.0
    first.CopyFrom(numpy_helper.from_array(values, first.name))
    loaded = detach_loaded_model(model, analysis)
    assert first.name in loaded.own  # not shared: the bytes differ
    result = prune_model(analysis.model, uniform_plan(analysis.groups, 0.5), analysis=analysis)
    with pytest.raises(ValidationError, match="constant folding changed"):
        validate.validate_pruned(loaded, analysis, result.selection, result.model)
