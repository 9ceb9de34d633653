"""The report's per-group channel counts come from the kept positions, whatever the width of each unit."""

from __future__ import annotations

import tiny_models

from agmc_onnx.analysis import analyze_model
from agmc_onnx.compress.gate import group_channels
from agmc_onnx.plan import uniform_plan


def test_channels_after_counts_units_of_different_widths_and_units_always_kept():
    analysis = analyze_model(tiny_models.shufflenet_v1_unit())
    rows = {row["id"]: row for row in group_channels(analysis, uniform_plan(analysis.groups, 0.5))}
    # The stream: 8 in-group units of 3 channels, half kept. The shuffled group: 2 units of 9 channels
    # (one kept) and 2 units of 3 channels that are always kept.
    assert (rows["g0"]["channels_before"], rows["g0"]["channels_after"]) == (24, 12)
    assert (rows["g1"]["channels_before"], rows["g1"]["channels_after"]) == (24, 15)
