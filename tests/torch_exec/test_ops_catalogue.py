"""Single-op models for the ops and attribute forms the corpus does not reach, checked against onnxruntime."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import pytest
import torch
from exec_testing import relative_error, run_onnxruntime
from onnx import TensorProto, helper, numpy_helper

from agmc_onnx.torch_exec import OnnxModule

RNG = np.random.default_rng(0)


def _f(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _i(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


@dataclass(frozen=True)
class OpCase:
    op: str
    x_shape: tuple[int, ...]
    attrs: dict = field(default_factory=dict)
    consts: tuple = ()  # extra inputs after x: np.ndarray initializers, or "" for an omitted optional input
    opset: int = 17
    n_outputs: int = 1


CASES = {
    "conv_groups_dilation": OpCase(
        "Conv", (2, 4, 9, 9), {"group": 2, "dilations": [2, 2], "pads": [2, 2, 2, 2]}, (_f(6, 2, 3, 3), _f(6))
    ),
    "conv_same_upper_stride": OpCase(
        "Conv", (1, 3, 10, 11), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, (_f(4, 3, 4, 4),)
    ),
    "conv_same_lower": OpCase("Conv", (1, 3, 7, 7), {"auto_pad": "SAME_LOWER"}, (_f(4, 3, 2, 2),)),
    "conv_asymmetric_pads": OpCase("Conv", (1, 3, 8, 8), {"pads": [0, 1, 2, 0]}, (_f(4, 3, 3, 3),)),
    "conv_1d": OpCase("Conv", (2, 3, 12), {"strides": [2]}, (_f(5, 3, 3), _f(5))),
    "conv_transpose_stride_pads": OpCase(
        "ConvTranspose",
        (1, 4, 5, 5),
        {"strides": [2, 2], "pads": [1, 0, 1, 2], "output_padding": [1, 1]},
        (_f(4, 3, 3, 3), _f(3)),
    ),
    "conv_transpose_groups": OpCase(
        "ConvTranspose", (1, 4, 5, 5), {"group": 2, "strides": [2, 2]}, (_f(4, 2, 2, 2),)
    ),
    "conv_transpose_output_shape": OpCase(
        "ConvTranspose", (1, 2, 4, 4), {"strides": [2, 2], "output_shape": [9, 9]}, (_f(2, 3, 3, 3),)
    ),
    "gemm_alpha_beta_trans": OpCase(
        "Gemm", (5, 3), {"alpha": 0.5, "beta": 2.0, "transA": 1, "transB": 1}, (_f(4, 5), _f(4))
    ),
    "gemm_no_bias": OpCase("Gemm", (2, 3), {}, (_f(3, 4),)),
    "matmul_batched": OpCase("MatMul", (2, 3, 4), {}, (_f(4, 5),)),
    "maxpool_ceil": OpCase(
        "MaxPool", (1, 2, 7, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}
    ),
    "maxpool_asym_pads": OpCase("MaxPool", (1, 2, 6, 6), {"kernel_shape": [2, 2], "pads": [1, 0, 0, 1]}),
    "avgpool_include_pad": OpCase(
        "AveragePool", (1, 2, 7, 7), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}
    ),
    "avgpool_exclude_pad": OpCase(
        "AveragePool", (1, 2, 7, 7), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    ),
    "avgpool_ceil": OpCase(
        "AveragePool", (1, 2, 8, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}
    ),
    "avgpool_asym_exclude": OpCase(
        "AveragePool", (1, 2, 6, 6), {"kernel_shape": [3, 3], "pads": [0, 1, 2, 0]}
    ),
    "global_max_pool": OpCase("GlobalMaxPool", (2, 3, 5, 4)),
    "instance_norm": OpCase("InstanceNormalization", (2, 3, 4, 5), {"epsilon": 1e-3}, (_f(3), _f(3))),
    "layer_norm_axis": OpCase("LayerNormalization", (2, 3, 4, 5), {"axis": 2}, (_f(4, 5), _f(4, 5))),
    "batch_norm": OpCase(
        "BatchNormalization", (2, 3, 4, 4), {"epsilon": 1e-3}, (_f(3), _f(3), _f(3), np.abs(_f(3)) + 0.5)
    ),
    "prelu": OpCase("PRelu", (2, 3, 4, 4), {}, (_f(3, 1, 1),)),
    "leaky_relu": OpCase("LeakyRelu", (2, 3), {"alpha": 0.2}),
    "hard_sigmoid": OpCase("HardSigmoid", (2, 7), {"alpha": 0.3, "beta": 0.4}),
    "hard_swish": OpCase("HardSwish", (2, 7)),
    "tanh": OpCase("Tanh", (2, 7)),
    "gelu_tanh": OpCase("Gelu", (3, 4), {"approximate": "tanh"}, opset=20),
    "softmax": OpCase("Softmax", (2, 3, 4), {"axis": 1}),
    "softmax_opset11_coerced": OpCase("Softmax", (2, 3, 4), {"axis": 1}, opset=11),
    "clip_min_only": OpCase("Clip", (3, 4), {}, (np.array(-0.2, np.float32),)),
    "pow": OpCase("Pow", (3, 4), {}, (np.array(3.0, np.float32),)),
    "sub_div": OpCase("Div", (3, 4), {}, (np.array([1.5, -2.0, 0.5, 4.0], np.float32),)),
    "max_variadic": OpCase("Max", (3, 4), {}, (_f(3, 4), _f(1, 4))),
    "min": OpCase("Min", (3, 4), {}, (_f(4),)),
    "resize_nearest_scales": OpCase(
        "Resize",
        (1, 2, 3, 4),
        {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
        ("", np.array([1, 1, 2, 2], np.float32)),
    ),
    "resize_linear_sizes": OpCase("Resize", (1, 2, 3, 4), {"mode": "linear"}, ("", "", _i(1, 2, 7, 5))),
    "resize_linear_align_corners": OpCase(
        "Resize",
        (1, 2, 3, 4),
        {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
        ("", np.array([1, 1, 2, 3], np.float32)),
    ),
    "pad_constant": OpCase("Pad", (1, 2, 3, 3), {}, (_i(0, 0, 1, 2, 0, 0, 2, 1), np.array(0.5, np.float32))),
    "pad_reflect": OpCase("Pad", (1, 2, 4, 4), {"mode": "reflect"}, (_i(0, 0, 1, 2, 0, 0, 2, 1),)),
    "pad_edge": OpCase("Pad", (1, 2, 4, 4), {"mode": "edge"}, (_i(0, 0, 1, 0, 0, 0, 0, 3),)),
    "split_input": OpCase("Split", (2, 6, 3), {"axis": 1}, (_i(1, 2, 3),), n_outputs=3),
    "split_attr_opset11": OpCase("Split", (2, 6, 3), {"axis": 1, "split": [4, 2]}, opset=11, n_outputs=2),
    "split_equal": OpCase("Split", (2, 6, 3), {"axis": 1}, n_outputs=3),
    "slice_negative_step": OpCase("Slice", (4, 6), {}, (_i(-1, 1), _i(-100, 5), _i(0, 1), _i(-1, 2))),
    "squeeze_input": OpCase("Squeeze", (1, 3, 1, 4), {}, (_i(0, 2),)),
    "squeeze_attr_opset11": OpCase("Squeeze", (1, 3, 1, 4), {"axes": [0, -2]}, opset=11),
    "unsqueeze_input": OpCase("Unsqueeze", (3, 4), {}, (_i(0, 3),)),
    "unsqueeze_attr_opset11": OpCase("Unsqueeze", (3, 4), {"axes": [1]}, opset=11),
    "transpose_default": OpCase("Transpose", (2, 3, 4)),
    "reshape_zero_minus_one": OpCase("Reshape", (2, 3, 4), {}, (_i(0, -1),)),
    "reduce_mean_attr": OpCase("ReduceMean", (2, 3, 4), {"axes": [1, 2], "keepdims": 0}),
    "reduce_mean_opset18": OpCase("ReduceMean", (2, 3, 4), {}, (_i(-1),), opset=18),
    "reduce_sum_input": OpCase("ReduceSum", (2, 3, 4), {"keepdims": 1}, (_i(0, 2),)),
    "gather_negative": OpCase("Gather", (5, 3), {"axis": 0}, (_i(-1, 0, 2),)),
    "gather_elements_negative": OpCase(
        "GatherElements", (3, 4), {"axis": 1}, (np.array([[0, -1], [3, 1], [-4, 2]], dtype=np.int64),)
    ),
    "expand": OpCase("Expand", (3, 1), {}, (_i(2, 3, 4),)),
    "tile": OpCase("Tile", (2, 3), {}, (_i(2, 1),)),
    "where": OpCase("Where", (3, 4), {}, ()),  # built specially below
    "sqrt_of_abs": OpCase("Sqrt", (3, 4)),
    "erf": OpCase("Erf", (3, 4)),
}


def _build(case: OpCase) -> onnx.ModelProto:
    inputs, initializers = ["x"], []
    for index, const in enumerate(case.consts):
        if isinstance(const, str):
            inputs.append(const)
            continue
        name = f"c{index}"
        inputs.append(name)
        initializers.append(numpy_helper.from_array(const, name))
    outputs = [f"y{i}" for i in range(case.n_outputs)]
    nodes = [helper.make_node(case.op, inputs, outputs, name=f"the_{case.op.lower()}", **case.attrs)]
    if case.op == "Where":  # Where needs a boolean condition: derive it from x
        nodes = [
            helper.make_node("Greater", ["x", "zero"], ["cond"]),
            helper.make_node("Where", ["cond", "x", "zero"], ["y0"]),
        ]
        initializers.append(numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
    graph = helper.make_graph(
        nodes,
        case.op.lower(),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(case.x_shape))],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.opset)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_op_matches_onnxruntime(case_id):
    case = CASES[case_id]
    model = _build(case)
    x = RNG.standard_normal(case.x_shape).astype(np.float32)
    if case.op == "Sqrt":
        x = np.abs(x)
    expected = run_onnxruntime(model, {"x": x})
    with torch.no_grad():
        actual = OnnxModule(model).eval()(torch.from_numpy(x))
    actual = actual if isinstance(actual, tuple) else (actual,)
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert tuple(got.shape) == want.shape
        assert relative_error(got.numpy(), want) <= 1e-5
