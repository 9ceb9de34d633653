"""The MACs model the search budgets with agrees with MACs counted from the pruned file's shapes alone."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx
import pytest
import tiny_models
from trained_models import shared_model_path

from agmc_onnx.analysis import analyze_model
from agmc_onnx.groups.macs_model import MacsModel
from agmc_onnx.importance import channel_scores
from agmc_onnx.io import load_model
from agmc_onnx.plan import uniform_plan
from agmc_onnx.prune import prune_model

_WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _activation_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Static shapes of every tensor with the batch fixed to 1, by ONNX shape inference only."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_value = 1
    del fixed.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(fixed, strict_mode=True, data_prop=True)
    shapes = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    return shapes


def _probed_shapes(model: onnx.ModelProto, names: set[str]) -> dict[str, tuple[int, ...]]:
    """Shapes that inference leaves open (data-dependent slices), read off one onnxruntime run."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in sorted(names):
        probe.graph.output.append(onnx.ValueInfoProto(name=name))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {
        i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
        for i in session.get_inputs()
    }
    values = session.run(sorted(names), feeds)
    return {name: tuple(value.shape) for name, value in zip(sorted(names), values)}


def count_macs(model: onnx.ModelProto) -> int:
    """Multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul-with-a-constant, from activation
    shapes and attributes (weights are only asked whether they are constants)."""
    shapes = _activation_shapes(model)
    weighted = [n for n in model.graph.node if n.op_type in _WEIGHTED]
    needed = {t for node in weighted for t in (node.input[0], node.output[0])}
    missing = {t for t in needed if t and t not in shapes}
    if missing:
        shapes.update(_probed_shapes(model, missing))
    constants = {init.name for init in model.graph.initializer}
    total = 0
    for node in weighted:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.input[1] not in constants:
            continue
        x, y = shapes[node.input[0]], shapes[node.output[0]]
        if node.op_type in ("Conv", "ConvTranspose"):
            kernel = math.prod(attrs["kernel_shape"]) if "kernel_shape" in attrs else None
            if kernel is None:
                kernel = math.prod(next(i.dims for i in model.graph.initializer if i.name == node.input[1])[2:])
            group = attrs.get("group", 1)
            spatial = math.prod(y[2:]) if node.op_type == "Conv" else math.prod(x[2:])
            total += x[0] * spatial * x[1] * y[1] // group * kernel
        elif node.op_type == "Gemm":
            k = x[0] if attrs.get("transA", 0) else x[1]
            total += y[0] * y[1] * k
        else:
            total += math.prod(y[:-1]) * x[-1] * y[-1]
    return total


def _kept_fractions(analysis, selection) -> dict[str, float]:
    return {
        g.id: len(selection.keep_units.get(g.id, range(g.n_units))) / g.n_units
        for g in analysis.groups
        if g.n_units  # a group whose units are all kept whole has nothing to choose
    }


def _check(model: onnx.ModelProto) -> None:
    analysis = analyze_model(model)
    macs_model = MacsModel.from_analysis(analysis)
    assert count_macs(model) == pytest.approx(macs_model.total, rel=0.005)
    for plan in tiny_models.half_and_random_plans(analysis, low=0.2):
        result = prune_model(model, plan, analysis=analysis)
        predicted = macs_model.macs(_kept_fractions(analysis, result.selection))
        counted = count_macs(result.model)
        assert counted < 0.9 * macs_model.total
        assert counted == pytest.approx(predicted, rel=0.005), (counted, predicted)


@pytest.mark.parametrize(
    "name", ["resnet20", *(pytest.param(n, marks=pytest.mark.slow) for n in ("resnet56", "mobilenetv2"))]
)
def test_macs_model_matches_an_independent_count_on_pruned_zoo_networks(name):
    _check(load_model(shared_model_path(name)))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "shufflenet_v2_x0_5", "shufflenet_v1_g3", "densenet121"])
def test_macs_model_matches_an_independent_count_on_pruned_corpus_networks(name, corpus_cache_dir):
    pytest.importorskip("torchvision")
    from agmc_onnx.models.corpus import export_corpus_model

    _check(load_model(export_corpus_model(name, False, cache_dir=corpus_cache_dir)))


_GROUPED_AND_SHUFFLED = (
    "grouped_conv", "depthwise_after_producer", "grouped_conv_two_towers", "shufflenet_v1_unit", "shufflenet_v2_stream"
)


@pytest.mark.parametrize("name", _GROUPED_AND_SHUFFLED)
def test_macs_model_matches_an_independent_count_on_grouped_convolutions(name):
    _check(tiny_models.CATALOGUE[name]())


@pytest.mark.parametrize("importance", ["l1", "random"])
def test_units_of_unequal_macs_are_predicted_exactly_for_the_units_the_importance_keeps(importance):
    """A ShuffleNetV2 stream's units differ in MACs (a shuffle sends each wholly into one half of the next
    split): the prediction of any kept count is the count of the written model, whichever units it keeps."""
    model = tiny_models.shufflenet_v2_stream()
    analysis = analyze_model(model)
    macs_model = MacsModel.from_analysis(analysis, channel_scores(analysis, importance))
    stream = analysis.groups[0]
    assert [r.column for r in macs_model.ranked] == [0] and stream.n_units == 12  # only the stream is ranked
    for ratio in (0.2, 0.3, 0.45, 0.5, 0.6, 0.75, 0.9):
        plan = dataclasses.replace(uniform_plan(analysis.groups, ratio), importance=importance)
        result = prune_model(model, plan, analysis=analysis)
        predicted = macs_model.macs(_kept_fractions(analysis, result.selection))
        assert count_macs(result.model) == pytest.approx(predicted, rel=1e-12), ratio
    full = np.ones(len(macs_model.group_ids))
    assert macs_model.macs(full) == pytest.approx(macs_model.total, rel=1e-12)


def test_groups_left_out_of_a_mapping_keep_everything():
    macs_model = MacsModel.from_analysis(analyze_model(load_model(shared_model_path("resnet20"))))
    assert macs_model.ranked == ()  # uniform units: the prediction stays one matrix product
    assert macs_model.macs({}) == pytest.approx(macs_model.total)
    first = macs_model.group_ids[0]
    assert macs_model.macs({first: 0.5}) < macs_model.total


def test_independent_count_of_a_known_conv():
    """A 3x3 conv 3 -> 8 on 8x8 with padding: 8*8 positions x 8 outputs x 3*9 inputs."""
    import tiny_models

    model = tiny_models.no_prunable_group()
    assert count_macs(model) == 8 * 8 * 4 * 3 * 9
