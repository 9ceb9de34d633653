"""The oracle's tolerance is float32 rounding noise measured through the network, not a share of the output."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import tiny_models
from trained_models import shared_model_path

from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import ValidationError
from agmc_onnx.io import load_model
from agmc_onnx.plan import ChannelSelection, uniform_plan
from agmc_onnx.prune import prune_model
from agmc_onnx.validate import compare_outputs, masked_reference, random_inputs, validate_pruned


def saturated_sigmoid(depth: int = 8, bias: float = -16.0) -> onnx.ModelProto:
    """Deep ReLU convs with growing activations, a near-cancelling 1x1 head and a saturated sigmoid.

    The outputs are ~1e-6, while onnxruntime's sigmoid has an absolute error near 1e-7: a tolerance
    relative to the output's scale fails it on arithmetic noise alone, as on real detection heads.
    """
    net = tiny_models.TinyNet("saturated_sigmoid", input_shape=(3, 16, 16))
    x, channels = "input", 3
    for _ in range(depth):
        gain = np.float32(4.0 / np.sqrt(channels * 9))
        weight = net.rng.standard_normal((16, channels, 3, 3)).astype(np.float32) * gain
        x = net.node("Relu", [net.node("Conv", [x, net.const(weight, "w")], kernel_shape=[3, 3], pads=[1] * 4)])
        channels = 16
    head = net.rng.standard_normal((1, channels, 1, 1)).astype(np.float32)
    head = (head - head.mean()) * np.float32(1e-3)
    bias_name = net.const(np.array([bias], np.float32), "b")
    logits = net.node("Conv", [x, net.const(head, "w"), bias_name], kernel_shape=[1, 1])
    return net.build(net.node("Sigmoid", [logits]))


def _one_channel_off(selection: ChannelSelection, group_id: str, n_units: int) -> ChannelSelection:
    """The same selection with one kept unit of ``group_id`` swapped for a dropped one."""
    keep = list(selection.keep_units[group_id])
    dropped = sorted(set(range(n_units)) - set(keep))
    wrong = dict(selection.keep_units)
    wrong[group_id] = tuple(sorted(keep[1:] + [dropped[0]]))
    return ChannelSelection(wrong)


def test_saturated_sigmoid_passes_where_a_relative_tolerance_fails():
    model = saturated_sigmoid()
    analysis = analyze_model(model)
    result = prune_model(model, uniform_plan(analysis.groups, 0.5), analysis=analysis)
    report = validate_pruned(model, analysis, result.selection, result.model)
    assert report.passed
    # The failure users saw: the old tolerance (1e-4 of the output's scale) is below the noise floor.
    assert 0 < report.max_abs_diff and report.max_abs_diff > 1e-4 * report.output_scale


def test_saturated_sigmoid_still_catches_one_wrong_channel():
    model = saturated_sigmoid()
    analysis = analyze_model(model)
    result = prune_model(model, uniform_plan(analysis.groups, 0.5), analysis=analysis)
    last = analysis.prunable_groups[-1]
    wrong = _one_channel_off(result.selection, last.id, last.n_units)
    with pytest.raises(ValidationError, match="differs from the masked original") as caught:
        validate_pruned(model, analysis, wrong, result.model)
    assert caught.value.output_name == model.graph.output[0].name


def test_zoo_model_one_wrong_channel_is_far_above_tolerance():
    model = load_model(shared_model_path("resnet20"))
    analysis = analyze_model(model)
    result = prune_model(model, uniform_plan(analysis.groups, 0.5), analysis=analysis)
    feeds = random_inputs(analysis.model)
    good = compare_outputs(masked_reference(model, analysis, result.selection), result.model, feeds)
    assert good.passed and good.max_abs_diff < good.tolerance / 4
    for group in (analysis.prunable_groups[0], analysis.prunable_groups[-1]):
        wrong = _one_channel_off(result.selection, group.id, group.n_units)
        report = compare_outputs(masked_reference(model, analysis, wrong), result.model, feeds)
        assert not report.passed and report.max_abs_diff > 10 * report.tolerance


def test_exact_comparison_has_zero_tolerance():
    model = tiny_models.conv_bn_relu()
    feeds = random_inputs(model)
    assert compare_outputs(model, model, feeds, exact=True).tolerance == 0.0
    assert compare_outputs(model, model, feeds, exact=True).passed
    noisy = compare_outputs(model, model, feeds)
    assert noisy.tolerance > 0 and noisy.max_abs_diff == 0.0
