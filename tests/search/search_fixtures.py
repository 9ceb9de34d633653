"""Small models and datasets for the search tests (imported by the test modules; not a conftest)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from tiny_models import TinyNet

from agmc_onnx.data import ImageDataset, to_model_input
from agmc_onnx.data.preprocessing import PreprocessSpec

CLASSES = tuple(f"class{i}" for i in range(4))
SPEC = PreprocessSpec(size=(8, 8), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def tiny_classifier() -> onnx.ModelProto:
    """conv-bn-relu ×2, a residual block, global pooling and a 4-way Gemm head; 8×8 RGB input."""
    net = TinyNet("tiny_classifier")
    x = net.node("Relu", [net.bn(net.conv("input", 3, 16, bias=False), 16)])
    x = net.node("Relu", [net.bn(net.conv(x, 16, 16, bias=False, stride=2), 16)])
    branch = net.node("Relu", [net.bn(net.conv(x, 16, 24, bias=False), 24)])
    branch = net.bn(net.conv(branch, 24, 16, bias=False), 16)
    x = net.node("Relu", [net.node("Add", [branch, x])])
    pooled = net.node("Flatten", [net.node("GlobalAveragePool", [x])])
    model = net.build(net.gemm(pooled, 16, 4))
    for key, value in (("preprocessing", SPEC.to_json()), ("labels", json.dumps(list(CLASSES)))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


def labelled_by_model(model: onnx.ModelProto, n_images: int = 64, seed: int = 0) -> ImageDataset:
    """Random images labelled with the model's own predictions: the unpruned model scores 100 %."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_images, 8, 8, 3), dtype=np.uint8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": to_model_input(images, SPEC)})[0]
    return ImageDataset(images, logits.argmax(axis=1).astype(np.int64), CLASSES, source="tiny")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Two OpenMP threads on a busy 2-core machine are many times slower than one for these small nets."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def random_episodes(wall, n_episodes: int, seed: int = 0):
    """Outcomes of ``n_episodes`` episodes whose actions are uniform random (the wall corrects them)."""
    from agmc_onnx.search.env import PruningEnv

    env = PruningEnv(wall.groups, wall)
    rng = np.random.default_rng(seed)
    outcomes = []
    for _ in range(n_episodes):
        env.reset()
        for _ in range(env.n_steps):
            env.step(float(rng.uniform()))
        outcomes.append(env.finish())
    return outcomes
