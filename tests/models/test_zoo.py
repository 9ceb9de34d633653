"""The shipped zoo, the export format and a tiny training run."""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_threads import one_torch_thread

from agmc_onnx.cost import create_session
from agmc_onnx.data import ImageDataset, resolve_splits
from agmc_onnx.errors import ModelLoadError
from agmc_onnx.io import load_model
from agmc_onnx.models.export import CIFAR10_LABELS, CIFAR10_SPEC, export_onnx
from agmc_onnx.models.networks import resnet20
from agmc_onnx.models.train import TrainConfig, train_network
from agmc_onnx.models.zoo import ZOO_DIR, demo_data_path, zoo_model_names, zoo_model_path


def test_zoo_lists_three_models_with_their_metadata() -> None:
    assert zoo_model_names() == ("resnet20", "resnet56", "mobilenetv2")
    for name in zoo_model_names():
        metadata = {p.key: p.value for p in load_model(zoo_model_path(name), check=False).metadata_props}
        assert json.loads(metadata["labels"]) == list(CIFAR10_LABELS)
        assert json.loads(metadata["preprocessing"])["size"] == [32, 32]
    assert zoo_model_path("mobilenet_v2") == zoo_model_path("mobilenetv2")
    with pytest.raises(ModelLoadError, match="no zoo model named 'vgg19'"):
        zoo_model_path("vgg19")


def test_zoo_folder_stays_below_20_mb() -> None:
    assert sum(p.stat().st_size for p in ZOO_DIR.iterdir() if p.is_file()) < 20_000_000


@pytest.mark.parametrize(("split", "per_class"), [("train", 200), ("test", 100)])
def test_demo_data_is_a_class_balanced_cifar10_subset(split: str, per_class: int) -> None:
    path = resolve_splits(demo_data_path()).for_split(split)
    assert path.name == f"cifar10_demo_{split}.tar.xz"
    with tarfile.open(path) as archive:
        names = [m.name for m in archive if m.isfile()]
    counts = Counter(Path(name).parent.name for name in names)
    assert counts == {label: per_class for label in CIFAR10_LABELS}
    assert all(name.endswith(".jpg") for name in names)


def test_export_writes_the_zoo_format(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = resnet20().eval()
    with one_torch_thread():
        model = export_onnx(module, tmp_path / "r20.onnx")
    assert {op.domain: op.version for op in model.opset_import}[""] >= 17
    assert "BatchNormalization" in {node.op_type for node in model.graph.node}
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == [
        "logits"
    ]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    metadata = {p.key: p.value for p in model.metadata_props}
    assert json.loads(metadata["preprocessing"]) == json.loads(CIFAR10_SPEC.to_json())
    assert metadata["dataset"] == "CIFAR-10 (JPEG copy)"
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(
        create_session(tmp_path / "r20.onnx").run(None, {"input": x})[0], expected, atol=1e-4
    )


def test_one_training_epoch_updates_the_weights() -> None:
    rng = np.random.default_rng(0)
    data = ImageDataset(
        rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8), np.arange(16) % 10, CIFAR10_LABELS
    )
    torch.manual_seed(0)
    module = resnet20()
    before = module.fc.weight.detach().clone()
    logs = []
    with one_torch_thread():
        config = TrainConfig(epochs=1, batch_size=8)
        trained = train_network(module, data, config=config, device="cpu", on_epoch=logs.append)
    assert len(logs) == 1 and np.isfinite(logs[0].loss)
    assert not torch.equal(before, trained.fc.weight)
    assert not trained.training
