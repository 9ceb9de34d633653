"""BatchNormalization re-estimation in ONNX: statistics equal the measured ones, and help pruned models."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from search_fixtures import SPEC, labelled_by_model, one_torch_thread, tiny_classifier  # noqa: F401  (autouse fixture)
from tiny_models import TinyNet
from trained_models import shared_model_path

from agmc_onnx.analysis import analyze_model
from agmc_onnx.data import load_splits, spec_from_model, to_model_input
from agmc_onnx.errors import PreconditionError
from agmc_onnx.evaluate import evaluate_accuracy
from agmc_onnx.importance import channel_scores
from agmc_onnx.io import load_model
from agmc_onnx.models.zoo import demo_data_path
from agmc_onnx.passes.base import run_passes
from agmc_onnx.passes.reestimate_batchnorm import ReestimateBatchNormPass, batchnorm_nodes
from agmc_onnx.plan import select_channels, uniform_plan
from agmc_onnx.prune import apply_selection
from agmc_onnx.search.reward import AccuracyReward, RewardConfig


def _tensor_value(model: onnx.ModelProto, name: str, feeds: dict) -> np.ndarray:
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([name], feeds)[0]


def recalibrate_batchnorm(model: onnx.ModelProto, batches: list) -> onnx.ModelProto:
    return run_passes(model, [ReestimateBatchNormPass(batches)])


def _initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    return next(onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name == name)


def test_first_batchnorm_gets_the_measured_mean_and_variance():
    model = tiny_classifier()
    batch = to_model_input(labelled_by_model(model, 32).images, SPEC)
    recalibrated = recalibrate_batchnorm(model, [batch])
    first = batchnorm_nodes(recalibrated)[0]
    features = _tensor_value(model, first.input[0], {"input": batch})  # conv output: no BN upstream
    np.testing.assert_allclose(
        _initializer(recalibrated, first.input[3]), features.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        _initializer(recalibrated, first.input[4]), features.var(axis=(0, 2, 3)), rtol=1e-3, atol=1e-5
    )
    assert len(batchnorm_nodes(recalibrated)) == len(batchnorm_nodes(model))
    onnx.checker.check_model(recalibrated, full_check=True)


def test_every_batchnorm_gets_its_own_statistics_and_the_input_model_is_untouched():
    model = tiny_classifier()
    before = model.SerializeToString()
    batch = to_model_input(labelled_by_model(model, 16).images, SPEC)
    recalibrated = recalibrate_batchnorm(model, [batch, batch])
    names = [n.input[k] for n in batchnorm_nodes(recalibrated) for k in (3, 4)]
    assert len(set(names)) == len(names)
    assert model.SerializeToString() == before


def test_recalibration_restores_accuracy_of_a_pruned_trained_model():
    model = load_model(shared_model_path("resnet20"))
    spec = spec_from_model(model)
    dataset = load_splits(demo_data_path(), spec, reward_size=256).reward
    analysis = analyze_model(model)
    selection = select_channels(uniform_plan(analysis.groups, 0.6), analysis.groups, channel_scores(analysis))
    pruned, _ = apply_selection(analysis, selection)
    batches = [to_model_input(dataset.images[:128], spec), to_model_input(dataset.images[128:], spec)]
    plain = evaluate_accuracy(pruned, dataset, spec).top1
    recalibrated = evaluate_accuracy(recalibrate_batchnorm(pruned, batches), dataset, spec).top1
    assert recalibrated > plain + 0.1


def test_reward_calibration_batches_are_class_balanced_on_a_class_ordered_set():
    model = tiny_classifier()
    dataset = labelled_by_model(model, 128)
    ordered = dataset.select(
        np.argsort(dataset.labels, kind="stable")
    )  # as archives are read: class by class
    config = RewardConfig(calibration_images=32, calibration_batch_size=16)
    reward = AccuracyReward(analyze_model(model), ordered, SPEC, config)
    assert [len(rows) for rows in reward.calibration_batches] == [16, 16]
    counts = np.bincount(ordered.labels, minlength=len(ordered.classes))
    for rows in reward.calibration_batches:
        in_batch = np.bincount(ordered.labels[rows], minlength=len(ordered.classes))
        assert np.all(in_batch[counts >= 8] >= 2)  # every well-represented class is in every batch


def test_a_model_below_opset_14_is_refused_with_the_fix():
    net = TinyNet("old_opset")
    model = net.build(net.node("Relu", [net.bn(net.conv("input", 3, 8), 8)]), opset=13)
    batch = np.zeros((2, 3, 8, 8), dtype=np.float32)
    with pytest.raises(PreconditionError, match="opset ≥ 14.*version_converter"):
        recalibrate_batchnorm(model, [batch])
