"""Fixtures for the zoo tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: two OpenMP threads on a 2-core machine that is busy elsewhere are far
    slower than one. The previous setting is restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
