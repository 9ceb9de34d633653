"""What the equivalence oracle needs of the model as loaded, without holding the loaded model.

The oracle compares the pruned model with the loaded model (masked) and checks that the prepared copy the
rewrites work on computes exactly what the loaded model computes. Keeping both models through pruning and
validation costs a second copy of every weight whenever preparing changed anything (a folded shape chain
is enough). A ``LoadedModel`` keeps the loaded model's weightless skeleton, its probe inputs, and of its
weights only those the prepared copy does not hold bit for bit under the same name; the others are read
from the prepared copy when the oracle runs. Its owner can then let the loaded model go.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from agmc_onnx.analysis import ModelAnalysis
from agmc_onnx.fed import FLOAT_TYPES
from agmc_onnx.graph.probe import probe_feeds
from agmc_onnx.graph.skeleton import weightless_copy

__all__ = ["LoadedModel", "detach_loaded_model", "ORACLE_BATCH"]

ORACLE_BATCH = 2  # two samples: a batch-dependent reshape cannot pass


@dataclass(frozen=True)
class LoadedModel:
    skeleton: onnx.ModelProto  # large float initializers are typed graph inputs
    feeds: dict[str, np.ndarray]  # the oracle's probe inputs (token ids bounded by the loaded tables)
    shared: frozenset[str]  # weights the prepared model holds bit for bit under the same name
    own: dict[str, np.ndarray]  # the other large float weights
    is_prepared: bool  # preparing changed nothing: the prepared model is the loaded one

    def weights(self, prepared: onnx.ModelProto) -> dict[str, np.ndarray]:
        """Every large float weight of the loaded model as an array (a new dict; shared arrays read-only)."""
        tensors = {t.name: t for t in prepared.graph.initializer if t.name in self.shared}
        return {**{name: numpy_helper.to_array(tensors[name]) for name in self.shared}, **self.own}


def detach_loaded_model(original: onnx.ModelProto, analysis: ModelAnalysis) -> LoadedModel:
    """What the oracle needs of ``original`` (as loaded) next to its ``analysis``; ``original`` not modified."""
    skeleton, moved = weightless_copy(original, data_types=FLOAT_TYPES)
    feeds = probe_feeds(original, ORACLE_BATCH, seed=0)
    if analysis.model is original:
        return LoadedModel(skeleton, feeds, frozenset(moved), {}, is_prepared=True)
    prepared = {t.name: t for t in analysis.model.graph.initializer}
    shared, own = set(), {}
    for tensor in original.graph.initializer:
        if tensor.name not in moved:
            continue
        if _same_tensor(tensor, prepared.get(tensor.name)):
            shared.add(tensor.name)
        else:
            own[tensor.name] = numpy_helper.to_array(tensor)
    return LoadedModel(skeleton, feeds, frozenset(shared), own, is_prepared=False)


def _same_tensor(tensor: onnx.TensorProto, twin: onnx.TensorProto | None) -> bool:
    """Same element type, shape and bytes (one tensor's bytes in memory twice, briefly)."""
    if twin is None or twin.data_type != tensor.data_type or list(twin.dims) != list(tensor.dims):
        return False
    if tensor.HasField("raw_data") and twin.HasField("raw_data"):
        return tensor.raw_data == twin.raw_data
    mine, theirs = numpy_helper.to_array(tensor), numpy_helper.to_array(twin)
    return mine.tobytes() == theirs.tobytes()
