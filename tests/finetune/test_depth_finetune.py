"""Fine-tuning and write-back on a graph made shallower by deleting residual branches."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from trained_models import shared_model_path

from agmc_onnx.analysis import analyze_model
from agmc_onnx.finetune import FinetuneConfig, Normalization, finetune
from agmc_onnx.io import load_model
from agmc_onnx.plan import PruningPlan
from agmc_onnx.prune import prune_model
from agmc_onnx.torch_exec import OnnxModule, write_back


@pytest.fixture(scope="module")
def shallow():
    model = load_model(shared_model_path("resnet20"))
    analysis = analyze_model(model)
    removed = {b.groups[0]: 0.0 for b in analysis.depth.branches[1::3]}
    pruned = prune_model(model, PruningPlan(removed), analysis).model
    assert len(pruned.graph.node) == len(analysis.model.graph.node) - 18
    return pruned


def test_finetune_loop_runs_on_the_shallower_graph(shallow):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=40)
    normalization = Normalization(mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
    config = FinetuneConfig(epochs=1, batch_size=16, lr=0.05, val_fraction=0.2, seed=0, device="cpu")
    result = finetune(shallow, images, labels, normalization, config)
    assert [r.epoch for r in result.history] == [0, 1] and np.isfinite(result.history[1].train_loss)
    assert [n.name for n in result.model.graph.node] == [n.name for n in shallow.graph.node]


def test_trained_values_are_written_back_by_name_into_the_shallower_graph(shallow):
    module = OnnxModule(shallow).train()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.05)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((8, 3, 32, 32)).astype(np.float32))
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(module(x), torch.arange(8) % 10)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    written = write_back(shallow, module.eval())
    assert [i.name for i in written.graph.initializer] == [i.name for i in shallow.graph.initializer]
    assert list(written.graph.node) == list(shallow.graph.node)
    changed = [a.name for a, b in zip(written.graph.initializer, shallow.graph.initializer) if a != b]
    assert len(changed) > len(shallow.graph.initializer) // 2
    session = ort.InferenceSession(written.SerializeToString(), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(module(x).numpy(), expected, rtol=1e-3, atol=1e-3)
