"""Real architectures exported to ONNX (random weights), as exported and with BatchNormalization fused."""

from __future__ import annotations

import pytest
import tiny_models

from agmc_onnx.analysis import analyze_model
from agmc_onnx.io import load_model
from agmc_onnx.models.corpus import CORPUS, export_corpus_model
from agmc_onnx.plan import uniform_plan
from agmc_onnx.prune import prune_model
from agmc_onnx.validate import validate_pruned

pytest.importorskip("torchvision")

# Heavy entries (hundreds of MB of weights) and the widest ResNet run in the benchmark, not here.
# The any-model entries (timm, transformers, old opsets, external data) run in the slow suite and the
# extended engine benchmark: exporting them costs minutes.
_SLOW = {name for name, entry in CORPUS.items() if entry.heavy or entry.extended} | {"wide_resnet50_2"}
CASES = [
    pytest.param(name, variant == "fused", id=f"{name}-{variant}", marks=[pytest.mark.slow] if name in _SLOW else [])
    for name in CORPUS
    for variant in CORPUS[name].variants
]


@pytest.mark.parametrize("name,fused", CASES)
def test_corpus_model_prunes_validly(name, fused, corpus_cache_dir):
    model = load_model(export_corpus_model(name, fused, cache_dir=corpus_cache_dir))
    analysis = analyze_model(model)
    # Most of a CNN's MACs must be prunable: pinned convolutions are an engine failure. Transformers keep
    # their residual stream (LayerNorm) at full width; their share is reported by the extended benchmark.
    assert analysis.prunable_macs / analysis.total_macs > (0.5 if CORPUS[name].extended else 0.9)
    for plan in tiny_models.half_and_random_plans(analysis, low=0.2):
        result = prune_model(model, plan, analysis=analysis)
        assert validate_pruned(model, analysis, result.selection, result.model).passed
        assert result.after.macs < result.before.macs


@pytest.mark.parametrize(
    "name",
    [
        "resnet18",
        "mobilenet_v3_small",
        pytest.param("densenet121", marks=pytest.mark.slow),
        "shufflenet_v2_x0_5",
    ],
)
def test_dynamo_exported_model_prunes_validly(name, corpus_cache_dir):
    """torch.export-based ONNX (opset 18) writes other patterns than the TorchScript exporter."""
    model = load_model(export_corpus_model(name, cache_dir=corpus_cache_dir, exporter="dynamo"))
    analysis = analyze_model(model)
    assert analysis.prunable_macs / analysis.total_macs > 0.9
    result = prune_model(model, uniform_plan(analysis.groups, 0.5), analysis=analysis)
    assert validate_pruned(model, analysis, result.selection, result.model).passed
