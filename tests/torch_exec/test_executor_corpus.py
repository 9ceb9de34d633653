"""The executor computes what onnxruntime computes, on every corpus model and the shared CIFAR models."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from exec_testing import corpus_params, relative_error, run_onnxruntime
from trained_models import shared_model_path

from agmc_onnx.io import load_model
from agmc_onnx.torch_exec import OnnxModule

TOLERANCE = 1e-4


def _input_size(model: onnx.ModelProto) -> int:
    return model.graph.input[0].type.tensor_type.shape.dim[2].dim_value


def _assert_matches_onnxruntime(model: onnx.ModelProto, path, batch: int) -> None:
    size = _input_size(model)
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    (expected,) = run_onnxruntime(path, {model.graph.input[0].name: x})
    module = OnnxModule(model).eval()
    with torch.no_grad():
        actual = module(torch.from_numpy(x)).numpy()
    assert actual.shape == expected.shape
    assert relative_error(actual, expected) <= TOLERANCE


@pytest.mark.parametrize(("name", "fused_bn"), corpus_params())
def test_corpus_model_matches_onnxruntime(corpus_model_path, name, fused_bn):
    path = corpus_model_path(name, fused_bn)
    _assert_matches_onnxruntime(load_model(path, check=False), path, batch=2)


@pytest.mark.parametrize("name", ["resnet20", "resnet56", "mobilenetv2"])
def test_shared_model_matches_onnxruntime(name):
    path = shared_model_path(name)  # models/zoo first, then ../shared/models
    _assert_matches_onnxruntime(load_model(path), path, batch=2)


@pytest.mark.parametrize("batch", [1, 5])
def test_run_time_shape_ops_follow_the_batch_size(corpus_model_path, batch):
    # ShuffleNet's channel shuffle computes its Reshape target from Shape/Gather/Div at run time.
    path = corpus_model_path("shufflenet_v2_x0_5", False)
    _assert_matches_onnxruntime(load_model(path, check=False), path, batch=batch)


def test_every_float_initializer_is_a_parameter_or_statistic(corpus_model_path):
    model = load_model(corpus_model_path("resnet18", False), check=False)
    module = OnnxModule(model)
    n_float = sum(1 for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
    assert len(module.onnx_parameters()) + len(module.onnx_buffers()) == n_float
    assert all(p.requires_grad for p in module.parameters())
    # 20 BatchNormalization nodes, each with a running mean and variance.
    assert len(module.onnx_buffers()) == 2 * sum(
        1 for n in model.graph.node if n.op_type == "BatchNormalization"
    )


def test_unfolded_linear_weight_behind_transpose_is_trainable(corpus_model_path):
    # Without constant folding, ConvNeXt's Linear layers read their weight through Transpose -> MatMul.
    model = load_model(corpus_model_path("convnext_tiny", False), check=False)
    module = OnnxModule(model)
    assert "features.1.0.block.3.weight" in module.onnx_parameters()
    assert module.n_constants() == 0
