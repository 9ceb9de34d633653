"""The trained CIFAR-10 models prune validly with hardware-friendly channel counts."""

from __future__ import annotations

import onnx_graphsurgeon as gs
import pytest
from trained_models import shared_model_path

from agmc_onnx.analysis import analyze_model
from agmc_onnx.io import load_model
from agmc_onnx.plan import uniform_plan
from agmc_onnx.prune import prune_model
from agmc_onnx.validate import validate_pruned


@pytest.mark.parametrize("name", ["resnet20", "resnet56", "mobilenetv2"])
def test_trained_model_prunes_at_half_rounded_to_8(name):
    model = load_model(shared_model_path(name))
    analysis = analyze_model(model)
    result = prune_model(model, uniform_plan(analysis.groups, 0.5, round_to=8), analysis=analysis)
    assert validate_pruned(model, analysis, result.selection, result.model).passed
    convs = [n for n in gs.import_onnx(result.model).nodes if n.op == "Conv"]
    assert all(c.inputs[1].values.shape[0] % 8 == 0 for c in convs)
    assert result.after.macs < 0.3 * result.before.macs
