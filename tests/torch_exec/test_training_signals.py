"""Gradients reach every parameter; SGD lowers the loss; BN statistics follow the ONNX momentum."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from agmc_onnx.io import load_model
from agmc_onnx.torch_exec import OnnxModule


@pytest.mark.parametrize(
    ("name", "fused_bn"),
    [
        ("resnet18", False),
        ("convnext_tiny", False),
        ("mobilenet_v3_small", False),
        ("shufflenet_v2_x0_5", True),
        ("squeezenet1_1", False),
    ],
)
def test_every_parameter_gets_a_finite_gradient(corpus_model_path, name, fused_bn):
    # No corpus model has a legitimately unused parameter: initializers nobody reads stay constants.
    model = load_model(corpus_model_path(name, fused_bn), check=False)
    module = OnnxModule(model).train()
    out = module(torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
    params = module.onnx_parameters()
    assert params
    for param_name, param in params.items():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name


def test_a_few_sgd_steps_lower_the_loss_on_resnet20(resnet20_model):
    torch.manual_seed(0)
    module = OnnxModule(resnet20_model).train()
    x = torch.randn(16, 3, 32, 32)
    labels = torch.arange(16) % 10
    optimizer = torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(module(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = torch.nn.functional.cross_entropy(module(x), labels).item()
    assert final < 0.8 * losses[0]


def test_running_statistics_follow_the_onnx_momentum():
    n_channels, momentum = 3, 0.7
    inits = [
        numpy_helper.from_array(np.ones(n_channels, np.float32), "scale"),
        numpy_helper.from_array(np.zeros(n_channels, np.float32), "shift"),
        numpy_helper.from_array(np.zeros(n_channels, np.float32), "mean"),
        numpy_helper.from_array(np.ones(n_channels, np.float32), "var"),
    ]
    node = helper.make_node(
        "BatchNormalization", ["x", "scale", "shift", "mean", "var"], ["y"], momentum=momentum
    )
    graph = helper.make_graph(
        [node],
        "bn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3, 4, 4])],
        inits,
    )
    module = OnnxModule(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])).train()
    x = torch.randn(8, n_channels, 4, 4) * 2 + 1
    module(x)
    batch_mean = x.mean(dim=(0, 2, 3))
    batch_var = x.var(dim=(0, 2, 3), unbiased=True)  # torch's convention for the running variance
    buffers = module.onnx_buffers()
    torch.testing.assert_close(buffers["mean"], batch_mean * (1 - momentum))
    torch.testing.assert_close(buffers["var"], momentum + batch_var * (1 - momentum))
    # Evaluation mode leaves them alone.
    module.eval()
    saved = buffers["mean"].clone()
    module(x)
    assert torch.equal(module.onnx_buffers()["mean"], saved)
    assert set(module.state_dict()) == {
        "weights.scale",
        "weights.shift",
        "running_stats.mean",
        "running_stats.var",
    }
