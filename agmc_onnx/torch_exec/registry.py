"""The op registry: ONNX op_type -> torch implementation, filled explicitly, duplicates refused.

An implementation has the signature ``fn(inputs, attrs, ctx) -> list[Tensor]``: ``inputs`` holds one
entry per ONNX input slot (``None`` for an omitted optional input), ``attrs`` the node's attributes as
plain Python values, ``ctx`` an :class:`OpContext`. An optional ``check(attrs, ctx)`` runs once when the
module is built, so that an unsupported attribute combination fails at construction, not mid-training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch

__all__ = ["OpContext", "OpSpec", "OpRegistry", "OpFn", "OpCheck"]


@dataclass(frozen=True)
class OpContext:
    """What an op may know besides its inputs and attributes."""

    node_name: str
    op_type: str
    opset: int
    training: bool
    n_outputs: int = 1


OpFn = Callable[[list, dict, OpContext], list]
OpCheck = Callable[[dict, OpContext], None]


@dataclass(frozen=True)
class OpSpec:
    fn: OpFn
    check: OpCheck | None = None


class OpRegistry(Mapping[str, OpSpec]):
    """A mapping op_type -> OpSpec for the default ONNX domain. ``add`` refuses a key twice."""

    def __init__(self) -> None:
        self._specs: dict[str, OpSpec] = {}

    def add(self, op_type: str, fn: OpFn, check: OpCheck | None = None) -> None:
        if op_type in self._specs:
            raise ValueError(f"op {op_type} is registered twice")
        self._specs[op_type] = OpSpec(fn, check)

    def __getitem__(self, op_type: str) -> OpSpec:
        return self._specs[op_type]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


def common_device(*tensors: torch.Tensor | None) -> torch.device:
    """The device of the first tensor not on the CPU (shape tensors and constants stay on the CPU)."""
    for tensor in tensors:
        if tensor is not None and tensor.device.type != "cpu":
            return tensor.device
    return torch.device("cpu")


def on_device(tensors: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    return [t if t.device == device or t.dim() == 0 else t.to(device) for t in tensors]
