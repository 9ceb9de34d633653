"""Accuracy through onnxruntime: every model form, batching, label matching, and a zoo regression value."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from agmc_onnx.cost import create_session
from agmc_onnx.data import ImageDataset, load_split
from agmc_onnx.errors import DataError
from agmc_onnx.evaluate import AccuracyResult, evaluate_accuracy, session_spec
from agmc_onnx.models.zoo import demo_data_path, zoo_model_path

LABELS = ("cat", "dog", "frog")


def _brightest_channel_classifier(batch: int | str = "batch", size: int = 4) -> onnx.ModelProto:
    """logits = channel means: predicts the brightest channel, so colour-coded images score 100 %."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 3])
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w", "b"], ["logits"]),
    ]
    weights = [
        numpy_helper.from_array(np.eye(3, dtype=np.float32), "w"),
        numpy_helper.from_array(np.zeros(3, np.float32), "b"),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "tiny", [x], [y], weights), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.metadata_props.add(key="labels", value=json.dumps(LABELS))
    return model


def _colour_dataset(labels: list[int], classes: tuple[str, ...] = LABELS, size: int = 4) -> ImageDataset:
    images = np.full((len(labels), size, size, 3), 10, np.uint8)
    for i, label in enumerate(labels):
        images[i, :, :, LABELS.index(classes[label])] = 200
    return ImageDataset(images, np.array(labels, np.int64), classes)


def test_every_model_form_gives_the_same_accuracy() -> None:
    model = _brightest_channel_classifier()
    dataset = _colour_dataset([0, 1, 2, 2, 1, 0, 0])
    forms = [model, model.SerializeToString(), create_session(model)]
    results = [evaluate_accuracy(form, dataset, batch_size=3) for form in forms]
    assert {(r.top1, r.top5, r.n_images) for r in results} == {(1.0, 1.0, 7)}
    assert all(isinstance(r, AccuracyResult) and r.seconds > 0 for r in results)


def test_wrong_labels_count_as_misses() -> None:
    dataset = _colour_dataset([0, 1, 2, 0])
    shifted = ImageDataset(dataset.images, np.array([1, 1, 0, 0]), LABELS)
    result = evaluate_accuracy(_brightest_channel_classifier(), shifted)
    assert result.top1 == 0.5  # images 1 and 3 keep their true label
    assert result.top5 == 1.0  # three classes: every label is within the top 5


def test_progress_reports_every_batch_up_to_the_total() -> None:
    calls: list[tuple[int, int]] = []
    evaluate_accuracy(
        _brightest_channel_classifier(),
        _colour_dataset([0, 1, 2] * 3),
        batch_size=4,
        progress=lambda event: calls.append((event.done, event.total)),
    )
    assert calls == [(4, 9), (8, 9), (9, 9)]


def test_fixed_batch_model_gets_padded_batches() -> None:
    model = _brightest_channel_classifier(batch=4)
    result = evaluate_accuracy(model, _colour_dataset([2, 1, 0, 1, 2, 0, 1, 2, 0, 0]), batch_size=256)
    assert (result.top1, result.n_images) == (1.0, 10)


def test_dataset_with_some_of_the_classes_is_matched_by_name() -> None:
    dataset = _colour_dataset([0, 1, 1, 0], classes=("dog", "frog"))  # label 0 = dog = model output 1
    assert evaluate_accuracy(_brightest_channel_classifier(), dataset).top1 == 1.0


def test_dataset_classes_unknown_to_the_model_are_rejected() -> None:
    dataset = ImageDataset(np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 1]), ("cat", "zebra"))
    with pytest.raises(DataError, match=r"classes \['zebra'\] are not among the model's labels"):
        evaluate_accuracy(_brightest_channel_classifier(), dataset)


def test_images_of_the_wrong_size_are_rejected() -> None:
    with pytest.raises(DataError, match="images are 8×8 but the model expects 4×4"):
        evaluate_accuracy(_brightest_channel_classifier(), _colour_dataset([0, 1], size=8))


def test_zoo_resnet20_on_the_demo_test_subset_matches_the_recorded_count() -> None:
    session = create_session(zoo_model_path("resnet20"))
    dataset = load_split(demo_data_path(), "test", session_spec(session), use_cache=False)
    result = evaluate_accuracy(session, dataset)
    # Regression values measured once with onnxruntime 1.32 (CPU) when the demo subset was built:
    # 878 of the 1,000 demo test images right at top-1, 992 at top-5.
    assert result.n_images == 1000
    assert round(result.top1 * 1000) == 878
    assert round(result.top5 * 1000) == 992


SHARED_CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One decode cache for the three models (all share the CIFAR-10 preprocessing)."""
    return tmp_path_factory.mktemp("decoded")


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_CIFAR10.is_dir(), reason="the shared CIFAR-10 copy is not present")
@pytest.mark.parametrize(
    ("name", "n_correct"), [("resnet20", 8853), ("resnet56", 8966), ("mobilenetv2", 8966)]
)
def test_zoo_models_reach_their_published_accuracy_on_the_full_test_set(
    name: str, n_correct: int, shared_cache: Path
) -> None:
    session = create_session(zoo_model_path(name))
    dataset = load_split(SHARED_CIFAR10, "test", session_spec(session), cache_dir=shared_cache)
    result = evaluate_accuracy(session, dataset)
    # The shared README's numbers: 88.53 %, 89.66 %, 89.66 % of the 10,000 test images.
    assert (result.n_images, round(result.top1 * result.n_images)) == (10_000, n_correct)
