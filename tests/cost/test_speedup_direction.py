"""The speed-up points the right way: above 1 for a model that is clearly faster than its baseline.

A model timed against itself, or a check that the speed-up is positive, cannot tell an inverted ratio
(the latency gate divides by it). Here the same network is padded with about ten times its work; only
the direction is asserted, with wide margins. Timing tests: marked slow, run them alone.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from tiny_models import TinyNet

from agmc_onnx.cli.main import cli
from agmc_onnx.cost import measure_paired

pytestmark = pytest.mark.slow


def _network(extra_convs: int) -> onnx.ModelProto:
    """Two 3x3 convs on 32x32; ``extra_convs`` more 3x3 convs on a side branch added in at 1e-3."""
    net = TinyNet(f"padded_{extra_convs}", (3, 32, 32))
    x = net.node("Relu", [net.conv("input", 3, 32)])
    y = net.node("Relu", [net.conv(x, 32, 32)])
    side = x
    for _ in range(extra_convs):
        side = net.node("Relu", [net.conv(side, 32, 32)])
    if extra_convs:
        scaled = net.node("Mul", [side, net.const(np.float32(1e-3))])
        y = net.node("Add", [y, scaled])
    return net.build(net.node("GlobalAveragePool", [y]))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speed")
    lean, padded = folder / "lean.onnx", folder / "padded.onnx"
    lean.write_bytes(_network(0).SerializeToString())
    padded.write_bytes(_network(20).SerializeToString())
    return lean, padded


def test_paired_speedup_is_above_one_when_the_model_is_faster(models):
    lean, padded = models
    # speedup = time(A) / time(B): the padded baseline A against the lean model B
    assert measure_paired(padded, lean, "mobile-cpu", n_rounds=6).speedup > 2.0
    assert measure_paired(lean, padded, "mobile-cpu", n_rounds=6).speedup < 0.5


@pytest.mark.parametrize("faster", [True, False], ids=["faster", "slower"])
def test_bench_vs_reports_the_models_speedup_over_the_baseline(models, faster):
    lean, padded = models
    model, baseline = (lean, padded) if faster else (padded, lean)
    result = CliRunner().invoke(
        cli, ["bench", str(model), "--vs", str(baseline), "--rounds", "6", "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    speedup = json.loads(result.stdout)["speedup"]
    assert speedup > 2.0 if faster else speedup < 0.5
