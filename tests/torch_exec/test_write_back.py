"""write_back: trained numbers go into the same graph; nothing else changes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from exec_testing import relative_error, run_onnxruntime
from onnx import TensorProto, helper, numpy_helper

from agmc_onnx.errors import PreconditionError
from agmc_onnx.io import load_model
from agmc_onnx.torch_exec import OnnxModule, write_back


@pytest.mark.parametrize(
    ("name", "fused_bn"), [("resnet18", False), ("convnext_tiny", False), ("shufflenet_v2_x0_5", True)]
)
def test_untrained_write_back_is_bit_identical(corpus_model_path, name, fused_bn):
    model = load_model(corpus_model_path(name, fused_bn), check=False)
    written = write_back(model, OnnxModule(model))
    assert written.SerializeToString() == model.SerializeToString()


def test_shared_resnet20_untrained_write_back_is_bit_identical(resnet20_model):
    written = write_back(resnet20_model, OnnxModule(resnet20_model))
    assert [i.raw_data for i in written.graph.initializer] == [
        i.raw_data for i in resnet20_model.graph.initializer
    ]
    assert list(written.graph.node) == list(resnet20_model.graph.node)
    assert written.SerializeToString() == resnet20_model.SerializeToString()


def _train_steps(module: OnnxModule, steps: int = 2) -> None:
    optimizer = torch.optim.SGD(module.parameters(), lr=0.05)
    generator = torch.Generator().manual_seed(0)
    module.train()
    for _ in range(steps):
        x = torch.randn(8, 3, 32, 32, generator=generator)
        loss = module(x).logsumexp(dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    module.eval()


def test_trained_values_and_statistics_are_written_into_the_same_graph(resnet20_model):
    module = OnnxModule(resnet20_model)
    before = {name: value.detach().clone() for name, value in module.onnx_buffers().items()}
    _train_steps(module)
    assert all(not torch.equal(before[name], value) for name, value in module.onnx_buffers().items())
    written = write_back(resnet20_model, module)
    # Same names, nodes, opset, metadata and element types; only the numbers differ.
    assert [i.name for i in written.graph.initializer] == [i.name for i in resnet20_model.graph.initializer]
    assert [i.data_type for i in written.graph.initializer] == [
        i.data_type for i in resnet20_model.graph.initializer
    ]
    assert list(written.graph.node) == list(resnet20_model.graph.node)
    assert written.opset_import == resnet20_model.opset_import
    assert written.metadata_props == resnet20_model.metadata_props
    onnx.checker.check_model(written, full_check=True)
    values = {i.name: numpy_helper.to_array(i) for i in written.graph.initializer}
    for name, buffer in module.onnx_buffers().items():
        np.testing.assert_array_equal(values[name], buffer.numpy())
    x = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)
    (expected,) = run_onnxruntime(written, {"input": x})
    with torch.no_grad():
        actual = module(torch.from_numpy(x)).numpy()
    assert relative_error(actual, expected) <= 1e-4


def test_identity_alias_stays_one_trained_initializer(resnet20_model):
    # The exporter replaced the shortcut BN bias of blocks 3 and 6 by Identity(bn2.bias).
    module = OnnxModule(resnet20_model)
    params = module.onnx_parameters()
    assert "layers.3.bn2.bias" in params and "layers.3.shortcut.1.bias" not in params
    _train_steps(module, steps=1)
    written = write_back(resnet20_model, module)
    aliases = [n for n in written.graph.node if n.op_type == "Identity"]
    assert [(n.input[0], n.output[0]) for n in aliases] == [
        (n.input[0], n.output[0]) for n in resnet20_model.graph.node if n.op_type == "Identity"
    ]
    stored = {i.name: numpy_helper.to_array(i) for i in written.graph.initializer}
    np.testing.assert_array_equal(stored["layers.3.bn2.bias"], params["layers.3.bn2.bias"].detach().numpy())


def test_float16_initializers_keep_their_element_type():
    weight = numpy_helper.from_array(np.ones((2, 3), np.float16), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 3])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    module = OnnxModule(model)
    with torch.no_grad():
        module.onnx_parameters()["w"].mul_(0.5)
    written = write_back(model, module)
    assert written.graph.initializer[0].data_type == TensorProto.FLOAT16
    np.testing.assert_array_equal(
        numpy_helper.to_array(written.graph.initializer[0]), np.full((2, 3), 0.5, np.float16)
    )


def test_write_back_into_another_model_is_refused(resnet20_model, corpus_model_path):
    other = load_model(corpus_model_path("resnet18", True), check=False)
    with pytest.raises(PreconditionError, match="model the module was built from"):
        write_back(other, OnnxModule(resnet20_model))
