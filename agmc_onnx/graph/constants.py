"""Values of graphsurgeon constants without keeping a second copy of every weight alive.

graphsurgeon imports initializers lazily (``LazyValues`` over the ONNX tensor) and ``Constant.values``
caches the converted array in the graph, so reading every weight once would hold a NumPy copy of the
whole model next to the ONNX one. Analysis and rewrites read weights through ``constant_values``: the
array lives as long as the caller keeps it, and an untouched constant is exported from its ONNX tensor.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs
from onnx import numpy_helper
from onnx_graphsurgeon.importers.onnx_importer import get_numpy_type
from onnx_graphsurgeon.ir.tensor import LazyValues, SparseValues

__all__ = ["constant_values"]


def constant_values(tensor: gs.Constant) -> np.ndarray:
    """The constant's values, to read; a lazily imported one is converted for this call only.

    ``LazyValues.load`` copies the converted array once more (``np.array`` of it): a second transient copy
    of each weight, 400 MB for VGG-16's first classifier layer. Plain ONNX tensors are converted once,
    into a read-only array; sparse ones and types NumPy lacks go through graphsurgeon.
    """
    stored = tensor._values  # graphsurgeon keeps no public way to read without caching
    if isinstance(stored, SparseValues) or (isinstance(stored, LazyValues) and get_numpy_type(stored.dtype) is None):
        return stored.load()
    if isinstance(stored, LazyValues):
        return numpy_helper.to_array(stored.tensor)
    return np.asarray(stored)
