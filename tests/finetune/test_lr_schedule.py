"""The per-step learning-rate schedule: cosine decay, optionally after a linear warm-up."""

from __future__ import annotations

import math

import pytest
import torch

from agmc_onnx.errors import PreconditionError
from agmc_onnx.finetune import FinetuneConfig
from agmc_onnx.finetune.training import lr_schedule


def _rates(total: int, warmup_fraction: float, lr: float = 0.1) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedule = lr_schedule(optimizer, total, warmup_fraction)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return rates


def test_without_warm_up_the_schedule_is_the_plain_cosine():
    rates = _rates(50, 0.0)
    assert rates == pytest.approx([0.05 * (1 + math.cos(math.pi * step / 50)) for step in range(50)])


def test_warm_up_rises_linearly_to_the_rate_then_decays_by_the_cosine():
    rates = _rates(100, 0.2)
    start = 0.1 / 20  # lr / warm-up steps
    assert rates[:21] == pytest.approx([start + (0.1 - start) * step / 20 for step in range(21)])
    assert rates[20:] == pytest.approx([0.05 * (1 + math.cos(math.pi * step / 80)) for step in range(80)])


def test_warm_up_share_outside_zero_to_one_is_refused():
    with pytest.raises(PreconditionError, match="warmup_fraction"):
        FinetuneConfig(warmup_fraction=1.0)
