"""Construction-time contract: unsupported ops and attributes fail early, the registry refuses duplicates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from agmc_onnx.errors import AgmcError, UnsupportedOpError
from agmc_onnx.torch_exec import OnnxModule, build_registry
from agmc_onnx.torch_exec.registry import OpRegistry


def _model(node, opset: int = 17, initializers=()):
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None)],
        list(initializers),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_unsupported_op_is_named_with_its_node_at_construction():
    model = _model(helper.make_node("Hardmax", ["x"], ["y"], name="head/hardmax"))
    with pytest.raises(UnsupportedOpError) as caught:
        OnnxModule(model)
    assert caught.value.op_type == "Hardmax"
    assert caught.value.node_name == "head/hardmax"
    assert "Hardmax" in str(caught.value) and "head/hardmax" in str(caught.value)
    assert isinstance(caught.value, AgmcError)


def test_custom_domain_op_is_unsupported():
    model = _model(helper.make_node("FusedConv", ["x"], ["y"], name="fc", domain="com.microsoft"))
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(UnsupportedOpError, match="com.microsoft"):
        OnnxModule(model)


def test_unsupported_resize_mode_fails_before_any_forward():
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up", mode="cubic")
    with pytest.raises(UnsupportedOpError, match="mode=cubic"):
        OnnxModule(_model(node, initializers=[scales]))


def test_unnamed_node_is_reported_by_op_and_position():
    with pytest.raises(UnsupportedOpError, match="Hardmax_0"):
        OnnxModule(_model(helper.make_node("Hardmax", ["x"], ["y"])))


def test_registry_refuses_a_second_registration():
    registry = OpRegistry()
    registry.add("Relu", lambda inputs, attrs, ctx: [torch.relu(inputs[0])])
    with pytest.raises(ValueError, match="Relu"):
        registry.add("Relu", lambda inputs, attrs, ctx: inputs)


def test_default_registry_covers_the_usual_cnn_ops():
    registry = build_registry()
    expected = {
        "Conv",
        "ConvTranspose",
        "Gemm",
        "MatMul",
        "BatchNormalization",
        "InstanceNormalization",
        "LayerNormalization",
        "Relu",
        "Clip",
        "LeakyRelu",
        "PRelu",
        "HardSwish",
        "HardSigmoid",
        "Sigmoid",
        "Tanh",
        "Erf",
        "Gelu",
        "Softmax",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "Pad",
        "Resize",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Pow",
        "Sqrt",
        "Max",
        "Min",
        "Concat",
        "Split",
        "Slice",
        "Reshape",
        "Flatten",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Shape",
        "Gather",
        "Cast",
        "Identity",
        "Dropout",
        "ReduceMean",
        "ReduceSum",
        "Constant",
        "ConstantOfShape",
        "Expand",
        "Range",
    }
    assert expected <= set(registry)


def test_forward_checks_the_number_of_inputs():
    module = OnnxModule(_model(helper.make_node("Relu", ["x"], ["y"])))
    with pytest.raises(ValueError, match="expected 1 inputs"):
        module(torch.zeros(1, 2, 4, 4), torch.zeros(1))
