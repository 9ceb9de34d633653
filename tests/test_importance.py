"""Channel importance criteria behind one interface: magnitude, random, first-order Taylor."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs
import pytest
import tiny_models
import torch

from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import PlanError
from agmc_onnx.importance import (
    Importance,
    MagnitudeImportance,
    RandomImportance,
    TaylorImportance,
    build_importance,
    channel_scores,
)
from agmc_onnx.plan import PruningPlan, select_channels
from agmc_onnx.prune import prune_model
from agmc_onnx.torch_exec import OnnxModule


def _conv_weights(analysis):
    graph = gs.import_onnx(analysis.model)
    return [n.inputs[1].values for n in graph.nodes if n.op == "Conv"]


def test_l2_is_the_norm_of_producer_and_consumer_weights():
    analysis = analyze_model(tiny_models.conv_bn_relu())
    w1, w2 = _conv_weights(analysis)
    squares = np.square(w1).reshape(8, -1).sum(1) + np.square(w2).transpose(1, 0, 2, 3).reshape(8, -1).sum(1)
    np.testing.assert_allclose(channel_scores(analysis, "l2")["g0"], np.sqrt(squares), rtol=1e-5)


def test_random_scores_are_seeded_per_group():
    analysis = analyze_model(tiny_models.residual_chain())
    first = channel_scores(analysis, RandomImportance(seed=3))
    again = channel_scores(analysis, RandomImportance(seed=3))
    other = channel_scores(analysis, RandomImportance(seed=4))
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert any(not np.array_equal(first[k], other[k]) for k in first)


def _labelled_batches(model, n_batches=2, batch_size=6):
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((batch_size, 3, 8, 8)).astype(np.float32) for _ in range(n_batches)]
    labels = [rng.integers(0, 4, batch_size) for _ in range(n_batches)]
    return batches, labels


def test_taylor_sums_weight_times_gradient_over_each_unit():
    model = tiny_models.conv_bn_relu()
    analysis = analyze_model(model)
    batches, labels = _labelled_batches(model)
    module = OnnxModule(analysis.model).eval()
    for batch, label in zip(batches, labels):
        _pooled_cross_entropy(module(torch.from_numpy(batch)), torch.from_numpy(label)).backward()
    graph = gs.import_onnx(analysis.model)
    convs = [n for n in graph.nodes if n.op == "Conv"]
    params = module.onnx_parameters()
    p1, p2 = (params[c.inputs[1].name] for c in convs)
    t1 = (p1 * p1.grad).abs().reshape(8, -1).sum(1)
    t2 = (p2 * p2.grad).abs().transpose(0, 1).reshape(8, -1).sum(1)
    taylor = TaylorImportance(batches, labels, loss=_pooled_cross_entropy)
    np.testing.assert_allclose(channel_scores(analysis, taylor)["g0"], (t1 + t2).detach().numpy(), rtol=1e-4)


def _pooled_cross_entropy(logits, labels):
    """The tiny models end in a feature map: their logits are its spatial mean."""
    return torch.nn.functional.cross_entropy(logits.mean(dim=(2, 3)), labels)


def test_taylor_ranks_a_dead_channel_last():
    model = tiny_models.conv_bn_relu()
    graph = gs.import_onnx(model)
    conv = [n for n in graph.nodes if n.op == "Conv"][1]
    conv.inputs[1].values[:, 5] = 0.0  # channel 5 of the first conv is read by nobody
    model = gs.export_onnx(graph)
    analysis = analyze_model(model)
    scores = channel_scores(analysis, TaylorImportance(*_labelled_batches(model), loss=_pooled_cross_entropy))["g0"]
    plan = PruningPlan({"g0": 7 / 8})
    assert 5 not in select_channels(plan, analysis.groups, {"g0": scores}).keep_units["g0"]


def test_prune_model_ranks_by_the_given_importance():
    model = tiny_models.conv_bn_relu()
    analysis = analyze_model(model)

    class Reversed(Importance):
        name = "reversed"

        def __call__(self, analysis, group):
            return -MagnitudeImportance(1)(analysis, group)

    plan = PruningPlan({"g0": 0.5})
    by_l1 = prune_model(model, plan, analysis=analysis).selection.keep_units["g0"]
    by_reversed = prune_model(model, plan, analysis=analysis, importance=Reversed()).selection.keep_units["g0"]
    assert set(by_l1).isdisjoint(by_reversed)


def test_data_criteria_need_data_and_unknown_names_are_refused():
    with pytest.raises(PlanError, match="needs calibration images"):
        build_importance("taylor")
    with pytest.raises(PlanError, match="unknown"):
        build_importance("l3")


def test_non_finite_scores_are_refused():
    analysis = analyze_model(tiny_models.conv_bn_relu())

    class Broken(Importance):
        name = "broken"

        def __call__(self, analysis, group):
            return np.full(group.n_units, np.nan)

    with pytest.raises(PlanError, match="all finite"):
        channel_scores(analysis, Broken())


def test_reconstruction_importance_removes_cancelling_twins_together():
    """Channels 0 and 7 cancel each other in the next layer: once one is gone, greedy removal takes the
    other at once (removing both loses nothing), which no per-channel norm can see."""
    from tiny_models import linear_pair

    graph = gs.import_onnx(linear_pair())
    first, second = [n for n in graph.nodes if n.op == "Conv"]
    first.inputs[1].values[7] = first.inputs[1].values[0]
    first.inputs[2].values[7] = first.inputs[2].values[0]
    second.inputs[1].values[:, 7] = -second.inputs[1].values[:, 0]  # the twins cancel in the next layer
    model = gs.export_onnx(graph)
    analysis = analyze_model(model)
    batches, _ = _labelled_batches(model)
    scores = channel_scores(analysis, build_importance("reconstruction", batches))["g0"]
    assert abs(scores[0] - scores[7]) == 1
    assert max(scores[0], scores[7]) <= 3
