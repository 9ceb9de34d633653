"""Bind a dataset to a model's inputs: check that every input can be fed, then turn rows into feeds.

Images (an ``ImageDataset``) feed a model with one image input through the preprocessing spec; arrays
keyed by input name (a ``TensorDataset``) feed any model, after their rank, fixed dimensions, dtype and
value range are checked against what each input expects (integer ids against the rows of the embedding
table they index).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from agmc_onnx.data.dataset import ImageDataset
from agmc_onnx.data.preprocessing import Dim, PreprocessSpec, check_spec_fits_input, to_model_input
from agmc_onnx.data.sources import Dataset
from agmc_onnx.data.tensors import TensorDataset
from agmc_onnx.errors import DataError

__all__ = ["InputInfo", "model_inputs", "Feeder"]


@dataclass(frozen=True)
class InputInfo:
    """One graph input: its name, numpy dtype and shape (dim_param names or None for dynamic dims)."""

    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...]
    index_rows: int | None = None  # rows of the constant table a Gather indexes with this input

    def describe(self) -> str:
        dims = ", ".join(str(d) if d is not None else "?" for d in self.shape)
        return f"{self.dtype.name} [{dims}]"


def model_inputs(model: onnx.ModelProto) -> tuple[InputInfo, ...]:
    """The graph inputs that are not initializers, in graph order."""
    initializers = {init.name: init for init in model.graph.initializer}
    infos = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)
        infos.append(InputInfo(value.name, dtype, shape, _gather_rows(model, value.name, initializers)))
    if not infos:
        raise DataError("the model has no graph input")
    return tuple(infos)


def _gather_rows(model: onnx.ModelProto, name: str, initializers: Mapping[str, onnx.TensorProto]) -> int | None:
    rows = [
        initializers[node.input[0]].dims[_axis(node)]
        for node in model.graph.node
        if node.op_type == "Gather" and node.input[1] == name and node.input[0] in initializers
    ]
    return min(rows) if rows else None


def _axis(node: onnx.NodeProto) -> int:
    return next((attr.i for attr in node.attribute if attr.name == "axis"), 0)


class Feeder:
    """Rows of ``dataset`` as onnxruntime feeds for a model with ``inputs``; checked once, at construction."""

    def __init__(self, dataset: Dataset, inputs: Sequence[InputInfo], spec: PreprocessSpec | None = None):
        self.dataset, self.inputs, self.spec = dataset, tuple(inputs), spec
        if isinstance(dataset, ImageDataset):
            _check_images(dataset, self.inputs, spec)
        else:
            _check_tensors(dataset, self.inputs)

    @property
    def n_samples(self) -> int:
        return len(self.dataset)

    @property
    def fixed_batch(self) -> int | None:
        first = self.inputs[0].shape[0] if self.inputs[0].shape else None
        return first if isinstance(first, int) and first > 0 else None

    def select(self, rows: np.ndarray) -> Feeder:
        return Feeder(self.dataset.select(rows), self.inputs, self.spec)

    def feeds(self, rows: np.ndarray | slice) -> dict[str, np.ndarray]:
        if isinstance(self.dataset, ImageDataset):
            (info,) = self.inputs
            return {info.name: to_model_input(self.dataset.images[rows], self.spec).astype(info.dtype, copy=False)}
        return {info.name: self.dataset.arrays[info.name][rows].astype(info.dtype, copy=False) for info in self.inputs}

    def batches(self, batch_size: int) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """(real rows, feeds) per batch; a fixed batch dimension is filled with zero rows that callers drop."""
        step = self.fixed_batch or max(1, batch_size)
        for start in range(0, self.n_samples, step):
            feeds = self.feeds(slice(start, start + step))
            n_real = len(next(iter(feeds.values())))
            if self.fixed_batch and n_real < step:
                feeds = {
                    k: np.concatenate([v, np.zeros((step - n_real, *v.shape[1:]), v.dtype)])
                    for k, v in feeds.items()
                }
            yield n_real, feeds


def _check_images(dataset: ImageDataset, inputs: tuple[InputInfo, ...], spec: PreprocessSpec | None) -> None:
    source = dataset.source or "dataset"
    if len(inputs) != 1:
        names = ", ".join(info.name for info in inputs)
        raise DataError(
            f"{source}: images can feed a model with one input, this model has {len(inputs)} ({names}); "
            "give an .npz with one array per input, keyed by input name"
        )
    (info,) = inputs
    if spec is None or info.dtype.kind != "f":
        raise DataError(
            f"{source}: images cannot feed input '{info.name}' ({info.describe()}); image inputs are float "
            "N×C×H×W or N×H×W×C — give an .npz of arrays keyed by input name"
        )
    check_spec_fits_input(spec, info.shape, input_name=info.name)


def _check_tensors(dataset: TensorDataset, inputs: tuple[InputInfo, ...]) -> None:
    source = dataset.source or "dataset"
    missing = [info.name for info in inputs if info.name not in dataset.arrays]
    if missing:
        raise DataError(
            f"{source} lacks the model input(s) {missing}; it holds {sorted(dataset.arrays)}; "
            "an .npz of model inputs needs one array per input, keyed by the input's name"
        )
    for info in inputs:
        _check_array(dataset.arrays[info.name], info, source)


def _check_array(array: np.ndarray, info: InputInfo, source: str) -> None:
    where = f"{source}: input '{info.name}'"
    if array.ndim != len(info.shape):
        raise DataError(f"{where}: the data have shape {list(array.shape)} but the model expects {info.describe()}")
    for axis, (have, want) in enumerate(zip(array.shape[1:], info.shape[1:]), start=1):
        if isinstance(want, int) and want > 0 and have != want:
            raise DataError(
                f"{where}: dimension {axis} is {have} in the data but the model expects {info.describe()}"
            )
    _check_dtype(array, info, where)
    if info.dtype.kind == "f" and array.dtype.kind == "f" and not np.isfinite(array).all():
        raise DataError(f"{where}: the data hold NaN or infinite values")
    if info.dtype.kind in "iu" and array.size:
        low, high = int(array.min()), int(array.max())
        limits = np.iinfo(info.dtype)
        if low < limits.min or high > limits.max:
            raise DataError(f"{where}: values span [{low}, {high}], outside {info.dtype.name}")
        if info.index_rows is not None and (low < 0 or high >= info.index_rows):
            raise DataError(
                f"{where}: ids span [{low}, {high}] but the table they index has {info.index_rows} rows; "
                f"ids must lie in [0, {info.index_rows - 1}] (wrong tokenizer or vocabulary?)"
            )


def _check_dtype(array: np.ndarray, info: InputInfo, where: str) -> None:
    allowed = {"f": "fiub", "i": "iub", "u": "iub", "b": "b"}.get(info.dtype.kind, info.dtype.kind)
    if array.dtype.kind not in allowed:
        raise DataError(
            f"{where}: the data hold {array.dtype.name} values but the model expects {info.describe()}; "
            f"store {info.dtype.name} values"
        )
