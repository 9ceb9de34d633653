"""Values of graphsurgeon constants without keeping a second copy of every weight alive.

graphsurgeon imports initializers lazily (``LazyValues`` over the ONNX tensor) and ``Constant.values``
caches the converted array in the graph, so reading every weight once would hold a NumPy copy of the
whole model next to the ONNX one. Analysis and rewrites read weights through ``constant_values``: the
array lives as long as the caller keeps it, and an untouched constant is exported from its ONNX tensor.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.ir.tensor import LazyValues

__all__ = ["constant_values"]


def constant_values(tensor: gs.Constant) -> np.ndarray:
    """The constant's values; a lazily imported one is converted for this call only."""
    stored = tensor._values  # graphsurgeon keeps no public way to read without caching
    if isinstance(stored, LazyValues):
        return stored.load()
    return np.asarray(stored)
