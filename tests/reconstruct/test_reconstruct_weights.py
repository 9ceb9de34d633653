"""Least-squares reconstruction: exact where the algebra allows, better than none elsewhere, safe on bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest
import tiny_models
import torch

from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import PreconditionError
from agmc_onnx.importance import channel_scores
from agmc_onnx.passes.base import PassManager
from agmc_onnx.passes.reconstruct_weights import ReconstructWeightsPass, RefitSettings, _layer_target, _Samples, _Target
from agmc_onnx.plan import ChannelSelection, select_channels, uniform_plan
from agmc_onnx.prune import prune_model
from agmc_onnx.reconstruct.consumers import Consumer, ResidualSum, find_consumers


def _inputs(shape, n_images, seed):
    return np.random.default_rng(seed).standard_normal((n_images, *shape)).astype(np.float32)


def _reconstructed(model, selection, n_images=64, settings=RefitSettings(), shape=(3, 8, 8), downstream=False):
    analysis = analyze_model(model)
    pruned = prune_model(model, selection, analysis=analysis).model
    batches = [_inputs(shape, n_images // 2, 1), _inputs(shape, n_images - n_images // 2, 2)]
    consumers = find_consumers(analysis, selection, downstream)
    reconstruct = ReconstructWeightsPass(analysis.model, consumers, batches, settings)
    model_out, stats = PassManager([reconstruct]).run(pruned)
    return analysis, pruned, model_out, stats["ReconstructWeightsPass"]


def _error(reference, candidate, shape=(3, 8, 8)):
    """Mean squared difference of the outputs on held-out inputs, relative to the reference's power."""
    x = _inputs(shape, 16, 9)
    expected, found = (ort.InferenceSession(m.SerializeToString()).run(None, {"input": x})[0] for m in (reference, candidate))
    return float(np.mean((found - expected) ** 2) / np.mean(expected**2))


def _linear_dependent_channel():
    """conv(3->8) -> conv(8->4), no activation between; channel 7 = 0.5·ch0 − 2·ch3 (weights and bias)."""
    model = tiny_models.linear_pair()
    graph = gs.import_onnx(model)
    first = [n for n in graph.nodes if n.op == "Conv"][0]
    weight, bias = first.inputs[1].values, first.inputs[2].values
    weight[7] = 0.5 * weight[0] - 2.0 * weight[3]
    bias[7] = 0.5 * bias[0] - 2.0 * bias[3]
    return gs.export_onnx(graph)


def test_a_removed_channel_that_is_a_combination_of_kept_ones_is_recovered_exactly():
    model = _linear_dependent_channel()
    selection = ChannelSelection({"g0": tuple(range(7))})
    analysis, pruned, reconstructed, stats = _reconstructed(model, selection, settings=RefitSettings(ridge=1e-9))
    assert stats["layers_refitted"] == 1
    assert _error(analysis.model, pruned) > 1e-2
    assert _error(analysis.model, reconstructed) < 1e-8


@pytest.mark.parametrize("downstream", [False, True], ids=["pruned-layers", "later-layers-too"])
@pytest.mark.parametrize(
    "build",
    [tiny_models.residual_chain, tiny_models.depthwise_after_producer, tiny_models.grouped_conv],
    ids=["residual_chain", "depthwise", "grouped_conv"],
)
def test_reconstruction_reduces_the_output_error(build, downstream):
    model = build()
    analysis = analyze_model(model)
    selection = select_channels(uniform_plan(analysis.groups, 0.5), analysis.groups, channel_scores(analysis))
    analysis, pruned, reconstructed, stats = _reconstructed(model, selection, n_images=96, downstream=downstream)
    assert stats["layers_refitted"] >= 1
    assert _error(analysis.model, reconstructed) < 0.7 * _error(analysis.model, pruned)


def test_a_gemm_head_is_refitted():
    model = tiny_models.flatten_gemm()
    analysis = analyze_model(model)
    selection = ChannelSelection({"g0": (0, 1, 2, 4, 6)})
    analysis, pruned, reconstructed, stats = _reconstructed(model, selection, n_images=400, shape=(3, 4, 4))
    assert stats["layers_refitted"] == 1
    assert _error(analysis.model, reconstructed, (3, 4, 4)) < 0.7 * _error(analysis.model, pruned, (3, 4, 4))


def test_the_structure_is_unchanged():
    model = tiny_models.residual_chain()
    analysis = analyze_model(model)
    selection = select_channels(uniform_plan(analysis.groups, 0.5), analysis.groups, channel_scores(analysis))
    _, pruned, reconstructed, _ = _reconstructed(model, selection)
    assert [n.op_type for n in pruned.graph.node] == [n.op_type for n in reconstructed.graph.node]
    shapes = {i.name: tuple(i.dims) for i in pruned.graph.initializer}
    assert shapes == {i.name: tuple(i.dims) for i in reconstructed.graph.initializer}


def test_too_few_images_says_how_many_are_needed():
    model = tiny_models.residual_chain()
    analysis = analyze_model(model)
    selection = select_channels(uniform_plan(analysis.groups, 0.5), analysis.groups, channel_scores(analysis))
    with pytest.raises(PreconditionError, match=r"needs at least 3 calibration images"):
        _reconstructed(model, selection, n_images=2, settings=RefitSettings(positions_per_image=16))


def test_a_singular_system_keeps_finite_weights():
    model = _linear_dependent_channel()
    analysis = analyze_model(model)
    selection = ChannelSelection({"g0": tuple(range(7))})
    pruned = prune_model(model, selection, analysis=analysis).model
    zeros = [np.zeros((32, 3, 8, 8), np.float32)]  # every row identical: rank one
    reconstruct = ReconstructWeightsPass(analysis.model, find_consumers(analysis, selection), zeros)
    reconstructed = PassManager([reconstruct]).run(pruned)[0]
    for tensor in gs.import_onnx(reconstructed).tensors().values():
        if isinstance(tensor, gs.Constant):
            assert np.all(np.isfinite(tensor.values))


def test_nothing_to_refit_when_nothing_is_pruned():
    model = tiny_models.residual_chain()
    analysis = analyze_model(model)
    assert find_consumers(analysis, ChannelSelection({})) == ()
    reconstruct = ReconstructWeightsPass(analysis.model, (), [_inputs((3, 8, 8), 4, 0)])
    _, stats = PassManager([reconstruct]).run(analysis.model)
    assert stats["ReconstructWeightsPass"] == {"layers_refitted": 0, "layers_skipped": 0}


def test_the_layers_before_each_residual_add_of_a_pruned_stream_are_refitted_toward_the_sum():
    model = tiny_models.residual_chain(depth=2, batchnorm=True)
    analysis = analyze_model(model)
    consumers = find_consumers(analysis, ChannelSelection({"g0": (0, 1, 2, 3, 4, 5)}))  # the residual stream
    nodes = {n.name: n for n in analysis.model.graph.node}
    adds = [n for n in analysis.model.graph.node if n.op_type == "Add"]
    residual = [c for c in consumers if c.residual is not None]
    assert [c.residual.add_output for c in residual] == [add.output[0] for add in adds]
    for consumer, add in zip(residual, adds):
        bn = next(n for n in analysis.model.graph.node if n.input[0] == consumer.output)
        assert consumer.residual.batchnorm == tuple(bn.input[1:5])
        assert consumer.residual.shortcut == add.input[1] and add.input[0] == bn.output[0]
        assert consumer.keep_out == (0, 1, 2, 3, 4, 5) and nodes[consumer.node].op_type == "Conv"


def test_a_residual_target_makes_the_pruned_sum_equal_the_original_sum():
    """Target = BN⁻¹(original sum − pruned shortcut): a layer that hits it exactly restores the sum; a
    channel whose BN scale is 0 cannot, and keeps its own output as target."""
    rng = np.random.default_rng(0)
    n, c, hw = 3, 4, 5
    shortcut = torch.from_numpy(rng.standard_normal((n, c, hw, hw)).astype(np.float32))
    scale = torch.tensor([1.5, -0.5, 0.0, 2.0])
    bias, mean, var = (torch.from_numpy(rng.standard_normal(c).astype(np.float32)) for _ in range(3))
    var = var.abs() + 0.5
    values = {"short": shortcut, "s": scale, "b": bias, "m": mean, "v": var}
    samples = _Samples(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 7, 24, 3]))
    target = _Target(torch.randn(4, c), torch.randn(4, c))
    consumer = Consumer("conv", "Conv", "x", "y", None, (1, c, hw, hw), (1, c, hw, hw),
                        ResidualSum("sum", "short", ("s", "b", "m", "v"), 1e-5))
    wanted = _layer_target(consumer, target, samples, values)
    slope = scale / torch.sqrt(var + 1e-5)
    picked = shortcut.reshape(n, c, -1)[samples.images, :, samples.places]
    restored = slope * wanted + bias - slope * mean + picked
    usable = [0, 1, 3]
    assert torch.allclose(restored[:, usable], target.residual_sum[:, usable], atol=1e-5)
    assert torch.equal(wanted[:, 2], target.output[:, 2])
    plain = _layer_target(dataclasses.replace(consumer, residual=None), target, samples, values)
    assert torch.equal(plain, target.output)
