"""The oracle's reference is the user's model as loaded; folding is checked on its own, exactly."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
import tiny_models

from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import PostconditionError, PreconditionError, ValidationError
from agmc_onnx.passes.base import PassManager, PassResult
from agmc_onnx.passes.mask_consumers import ConsumerMask, MaskConsumersPass
from agmc_onnx.plan import uniform_plan
from agmc_onnx.prune import prune_model
from agmc_onnx.validate import check_folding, compare_outputs, masked_reference, random_inputs, validate_pruned


def computed_consumer_weight() -> onnx.ModelProto:
    """The consumer conv's weight is computed in the file (``Identity`` of a scaled initializer)."""
    net = tiny_models.TinyNet("computed_consumer_weight")
    x = net.node("Relu", [net.conv("input", 3, 8)])
    weight = net.node("Mul", [net.weight(4, 8, 3, 3), net.const(np.float32(0.5))])
    weight = net.node("Identity", [weight])
    return net.build(net.node("Conv", [x, weight], kernel_shape=[3, 3], pads=[1] * 4))


def _folded_differently(analysis, node_op: str = "Conv", index: int = 1, change=lambda v: v + 0.5):
    """The analysis of a model whose folded copy has one weight changed, as a folding bug would."""
    graph = gs.import_onnx(analysis.model)
    node = [n for n in graph.nodes if n.op == node_op][index]
    values = change(np.array(node.inputs[1].values, copy=True))  # every channel: survives any selection
    node.inputs[1] = gs.Constant(node.inputs[1].name + "_bug", values)
    model = gs.export_onnx(graph, do_type_check=False)
    del model.opset_import[:]
    model.opset_import.extend(analysis.model.opset_import)
    model.ir_version = analysis.model.ir_version
    return dataclasses.replace(analysis, model=model)


def test_computed_consumer_weight_is_masked_by_a_mul_in_the_loaded_model():
    model = computed_consumer_weight()
    analysis = analyze_model(model)
    result = prune_model(model, uniform_plan(analysis.groups, 0.5), analysis=analysis)
    reference = masked_reference(model, analysis, result.selection)
    assert sum(n.op_type == "Mul" for n in reference.graph.node) == 2  # the file's own Mul and the mask
    assert any(n.op_type == "Identity" for n in reference.graph.node)  # nothing folded
    assert validate_pruned(model, analysis, result.selection, result.model).passed


def test_folding_bug_is_reported_as_such():
    model = tiny_models.conv_bn_relu()
    bad = _folded_differently(analyze_model(model))
    with pytest.raises(ValidationError, match="constant folding changed output") as caught:
        check_folding(model, bad, random_inputs(model))
    assert caught.value.output_name == model.graph.output[0].name
    assert caught.value.max_abs_diff > 0.1


def test_folding_check_is_exact_down_to_one_ulp():
    model = tiny_models.conv_bn_relu()
    bad = _folded_differently(analyze_model(model), change=lambda v: np.nextafter(v, np.float32(np.inf)))
    with pytest.raises(ValidationError, match="constant folding changed output") as caught:
        check_folding(model, bad, random_inputs(model))
    assert 0 < caught.value.max_abs_diff < 1e-4  # far inside the pruning tolerance, still refused


def test_pruning_a_badly_folded_model_fails_the_oracle_even_without_the_folding_check():
    model = tiny_models.conv_bn_relu()
    bad = _folded_differently(analyze_model(model))
    result = prune_model(model, uniform_plan(bad.groups, 0.5), analysis=bad)
    feeds = random_inputs(model)
    # Against the folded copy (the reference the oracle used to build) the bug is invisible ...
    folded_reference = masked_reference(bad.model, bad, result.selection)
    assert compare_outputs(folded_reference, result.model, feeds).passed
    # ... against the loaded model it is not.
    assert not compare_outputs(masked_reference(model, bad, result.selection), result.model, feeds).passed
    with pytest.raises(ValidationError, match="constant folding"):
        validate_pruned(model, bad, result.selection, result.model)


def test_folded_model_equals_loaded_model_exactly_on_real_exports():
    model = tiny_models.aliased_weights()
    analysis = analyze_model(model)
    assert len(analysis.model.graph.node) < len(model.graph.node)  # something was folded
    check_folding(model, analysis, random_inputs(model))


def test_mask_pass_requires_the_node_and_the_channel_length():
    model = tiny_models.conv_bn_relu()
    missing = MaskConsumersPass([ConsumerMask("no_such_node", 1, 1, 4, 8, (0,))])
    with pytest.raises(PreconditionError, match="no_such_node"):
        PassManager([missing]).run(model)
    conv = [n.name for n in model.graph.node if n.op_type == "Conv"][1]
    wrong_length = MaskConsumersPass([ConsumerMask(conv, 1, 1, 4, 6, (0,))])
    with pytest.raises(PreconditionError, match="expected 6"):
        PassManager([wrong_length]).run(model)


def test_mask_pass_ensures_the_removed_channels_read_zero():
    class ForgetfulMask(MaskConsumersPass):
        def call(self, graph: gs.Graph) -> PassResult:
            return PassResult(graph, False)

    model = tiny_models.conv_bn_relu()
    conv = [n.name for n in model.graph.node if n.op_type == "Conv"][1]
    with pytest.raises(PostconditionError, match="still reads a removed channel"):
        PassManager([ForgetfulMask([ConsumerMask(conv, 1, 1, 4, 8, (0, 3))])]).run(model)
    masked, stats = PassManager([MaskConsumersPass([ConsumerMask(conv, 1, 1, 4, 8, (0, 3))])]).run(model)
    weight = {i.name: i for i in masked.graph.initializer}[masked.graph.node[-1].input[1]]
    values = onnx.numpy_helper.to_array(weight)
    assert not values[:, [0, 3]].any() and values[:, [1, 2, 4, 5, 6, 7]].all()
    assert stats["MaskConsumersPass"] == {"masked_constants": 1, "masked_computed_weights": 0}
