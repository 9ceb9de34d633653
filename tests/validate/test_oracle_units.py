"""The oracle's parts one by one: the one-ulp perturbation, the tolerance formula, the worst output."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
import tiny_models
from onnx import TensorProto, helper, numpy_helper

from agmc_onnx.errors import ValidationError
from agmc_onnx.validate import (
    NOISE_FACTOR,
    OUTPUT_ULPS,
    compare_outputs,
    random_inputs,
    rounding_noise,
    ulp_perturbed,
)

EPS32 = float(np.finfo(np.float32).eps)


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {c.name: np.asarray(c.values) for c in gs.import_onnx(model).tensors().values() if isinstance(c, gs.Constant)}


def test_ulp_perturbation_moves_arithmetic_constants_by_one_ulp_and_nothing_else():
    model = tiny_models.instance_norm_resize_pad()  # float Resize scales and int64 Pad widths as well
    before, after = _constants(model), _constants(ulp_perturbed(model))
    consumers = {i: n.op_type for n in model.graph.node for i in n.input}
    moved = 0
    for name, values in before.items():
        if consumers.get(name) in ("Conv", "InstanceNormalization") and values.dtype == np.float32:
            up, down = np.nextafter(values, np.float32(np.inf)), np.nextafter(values, np.float32(-np.inf))
            assert ((after[name] == up) | (after[name] == down)).all(), name  # one ulp, every element
            assert (after[name] > values).any() and (after[name] < values).any()  # both directions
            moved += 1
        else:
            np.testing.assert_array_equal(after[name], values, err_msg=name)
    assert moved >= 3
    assert ulp_perturbed(model).opset_import == model.opset_import


def test_tolerance_is_the_noise_formula_per_output():
    model = tiny_models.conv_bn_relu()
    feeds = random_inputs(model)
    report = compare_outputs(model, model, feeds)
    noise = rounding_noise(model, feeds)[report.worst_output]
    assert noise > 0
    assert report.tolerance == pytest.approx(NOISE_FACTOR * noise + OUTPUT_ULPS * EPS32 * report.output_scale)
    assert (NOISE_FACTOR, OUTPUT_ULPS) == (64.0, 4.0)


def _two_outputs(scale_a: float, scale_b: float) -> onnx.ModelProto:
    """out_a = scale_a * x and out_b = scale_b * x."""
    nodes = [
        helper.make_node("Mul", ["x", "scale_a"], ["out_a"]),
        helper.make_node("Mul", ["x", "scale_b"], ["out_b"]),
    ]
    graph = helper.make_graph(
        nodes,
        "two_outputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3]) for n in ("out_a", "out_b")],
        [
            numpy_helper.from_array(np.array(scale_a, np.float32), "scale_a"),
            numpy_helper.from_array(np.array(scale_b, np.float32), "scale_b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_report_names_the_output_furthest_over_its_own_tolerance():
    """out_a changes more in absolute terms but within its (large) noise; out_b less, but beyond its own."""
    reference, candidate = _two_outputs(1000.0, 2.0), _two_outputs(1000.001, 2.0001)
    feeds = random_inputs(reference)
    report = compare_outputs(reference, candidate, feeds)
    assert report.worst_output == "out_b" and not report.passed
    assert report.max_abs_diff == pytest.approx(float(np.max(np.abs(1e-4 * feeds["x"]))), rel=1e-2)
    loose = compare_outputs(reference, _two_outputs(1000.001, 2.0), feeds)
    assert loose.passed and loose.worst_output == "out_a" and loose.max_abs_diff > 5 * report.max_abs_diff


def test_identical_models_pass_with_zero_difference_and_exactly_fail_on_one_ulp():
    reference = _two_outputs(1.0, 2.0)
    feeds = random_inputs(reference)
    assert compare_outputs(reference, reference, feeds, exact=True).max_abs_diff == 0.0
    nudged = _two_outputs(1.0, float(np.nextafter(np.float32(2.0), np.float32(3.0))))
    assert not compare_outputs(reference, nudged, feeds, exact=True).passed
    assert compare_outputs(reference, nudged, feeds).passed


def test_shape_mismatch_names_the_output():
    reference = tiny_models.conv_bn_relu()
    other = tiny_models.no_prunable_group()  # same input, 4 output channels, other output name
    other.graph.output[0].name = reference.graph.output[0].name
    other.graph.node[-1].output[0] = reference.graph.output[0].name
    other.graph.node[-1].input[1], weight = "w_other", other.graph.initializer[0]
    weight.name = "w_other"
    weight.CopyFrom(numpy_helper.from_array(np.zeros((5, 3, 3, 3), np.float32), "w_other"))
    del other.graph.initializer[1:]
    del other.graph.node[-1].input[2:]
    other.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 5
    with pytest.raises(ValidationError, match="has shape") as caught:
        compare_outputs(reference, other, random_inputs(reference))
    assert caught.value.output_name == reference.graph.output[0].name
