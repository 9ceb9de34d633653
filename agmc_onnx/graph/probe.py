"""Valid inputs for any model: random floats, token ids inside their embedding table, masks of ones.

Analysis, the equivalence oracle and latency runs all feed models they know nothing about. Float inputs
get standard-normal values; an integer input that (through casts and reshapes) indexes a constant table
with ``Gather`` gets ids drawn below that table's length (token, position and segment ids); every other
integer or boolean input gets ones (attention masks). A dynamic leading dimension is the batch; other
dynamic dimensions of integer and boolean inputs (the sequence length) take ``PROBE_LENGTH``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["PROBE_LENGTH", "InputSpec", "input_specs", "probe_feeds", "index_bounds"]

PROBE_LENGTH = 16
# Operators an index tensor may pass through unchanged in value on its way to a Gather.
_INDEX_CARRIERS = frozenset({"Cast", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity", "Expand"})


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: np.dtype
    dims: tuple[int | str | None, ...]  # ints where fixed, the symbol (or None) where dynamic
    index_bound: int | None  # ids must stay below this (an embedding table's length)

    @property
    def is_float(self) -> bool:
        return np.issubdtype(self.dtype, np.floating)

    def shape(self, batch_size: int, length: int = PROBE_LENGTH) -> tuple[int, ...]:
        shape = []
        for axis, dim in enumerate(self.dims):
            if isinstance(dim, int) and dim > 0:
                shape.append(dim)
            else:
                shape.append(batch_size if axis == 0 else length)
        return tuple(shape)


def input_specs(model: onnx.ModelProto, exclude: frozenset[str] = frozenset()) -> list[InputSpec]:
    """The real inputs of ``model`` (initializers listed as inputs, and ``exclude``, left out), with their id
    bounds."""
    initializers = {init.name for init in model.graph.initializer} | exclude
    bounds = index_bounds(model)
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        dims = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor_type.shape.dim
        )
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        specs.append(InputSpec(value.name, dtype, dims, bounds.get(value.name)))
    return specs


def probe_feeds(
    model: onnx.ModelProto,
    batch_size: int = 1,
    seed: int = 0,
    length: int = PROBE_LENGTH,
    exclude: frozenset[str] = frozenset(),
) -> dict[str, np.ndarray]:
    """Seeded valid feeds for every real input of ``model`` but those named in ``exclude``."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in input_specs(model, exclude):
        shape = spec.shape(batch_size, length)
        if spec.is_float:
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.index_bound is not None and spec.dtype != np.bool_:
            feeds[spec.name] = rng.integers(0, spec.index_bound, size=shape).astype(spec.dtype)
        else:
            feeds[spec.name] = np.ones(shape, dtype=spec.dtype)
    return feeds


def index_bounds(model: onnx.ModelProto) -> dict[str, int]:
    """Graph inputs used as ``Gather`` indices into a constant table: input name -> smallest table length."""
    tables = _constant_shapes(model)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    bounds: dict[str, int] = {}
    for value in model.graph.input:
        seen, frontier = {value.name}, [value.name]
        while frontier:
            tensor = frontier.pop()
            for node in consumers.get(tensor, []):
                if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == tensor:
                    bound = _table_length(node, tables)
                    if bound is not None:
                        bounds[value.name] = min(bound, bounds.get(value.name, bound))
                elif node.op_type in _INDEX_CARRIERS and node.input[0] == tensor:
                    for out in node.output:
                        if out not in seen:
                            seen.add(out)
                            frontier.append(out)
    return bounds


def _table_length(node: onnx.NodeProto, tables: Mapping[str, tuple[int, ...]]) -> int | None:
    shape = tables.get(node.input[0])
    if not shape:
        return None
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    return int(shape[axis % len(shape)])


def _constant_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    shapes = {init.name: tuple(int(d) for d in init.dims) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    shapes[node.output[0]] = tuple(numpy_helper.to_array(attr.t).shape)
    return shapes
