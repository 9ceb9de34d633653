"""What the equivalence oracle needs of the model as loaded, without holding the loaded model.

The oracle compares the pruned model with the loaded model (masked) and checks that the prepared copy the
rewrites work on computes exactly what the loaded model computes. Keeping both models through pruning and
validation costs a second copy of every weight whenever preparing changed anything (a folded shape chain
is enough). A ``LoadedModel`` keeps the loaded model's weightless skeleton, its probe inputs, and of its
weights only those the prepared copy does not hold bit for bit under the same name; the others are read
from the prepared copy when the oracle runs. Its owner can then let the loaded model go.

Given the model's file, the weights the file holds bit for bit are read from it again when the oracle
runs (``file_weights``) rather than kept or read from the prepared copy; once pruning is done, the
prepared copy can then give up their bytes too (``without_file_weights``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from agmc_onnx.analysis import ModelAnalysis
from agmc_onnx.fed import FLOAT_TYPES
from agmc_onnx.file_weights import FileWeights, file_weights
from agmc_onnx.graph.probe import probe_feeds
from agmc_onnx.graph.skeleton import hollow_copy, weightless_copy

__all__ = ["LoadedModel", "detach_loaded_model", "without_file_weights", "ORACLE_BATCH"]

ORACLE_BATCH = 2  # two samples: a batch-dependent reshape cannot pass


@dataclass(frozen=True)
class LoadedModel:
    skeleton: onnx.ModelProto  # large float initializers are typed graph inputs
    feeds: dict[str, np.ndarray]  # the oracle's probe inputs (token ids bounded by the loaded tables)
    shared: frozenset[str]  # weights the prepared model holds bit for bit under the same name
    own: dict[str, np.ndarray]  # the other large float weights, unless the file holds them
    is_prepared: bool  # preparing changed nothing: the prepared model is the loaded one
    from_file: FileWeights | None = None  # weights (shared or not) read from the model's file when needed

    def weights(self, prepared: onnx.ModelProto) -> dict[str, np.ndarray]:
        """Every large float weight of the loaded model as an array (a new dict; those read from the file
        are new writable arrays, those read from ``prepared`` read-only)."""
        weights = self.from_file.arrays() if self.from_file is not None else {}
        rest = self.shared - weights.keys()
        tensors = {t.name: t for t in prepared.graph.initializer if t.name in rest}
        weights.update((name, numpy_helper.to_array(tensors[name])) for name in rest)
        return {**weights, **self.own}


def detach_loaded_model(original: onnx.ModelProto, analysis: ModelAnalysis, source: Path | None = None) -> LoadedModel:
    """What the oracle needs of ``original`` (as loaded) next to its ``analysis``; ``original`` not modified.

    ``source``: the file ``original`` was loaded from, whose weights are read again when the oracle runs.
    """
    skeleton, moved = weightless_copy(original, data_types=FLOAT_TYPES)
    feeds = probe_feeds(original, ORACLE_BATCH, seed=0)
    weights = {t.name: t for t in original.graph.initializer if t.name in moved}
    from_file = file_weights(source, weights) if source is not None else None
    in_file = from_file.spans.keys() if from_file is not None else set()
    if analysis.model is original:
        return LoadedModel(skeleton, feeds, frozenset(moved), {}, True, from_file)
    prepared = {t.name: t for t in analysis.model.graph.initializer}
    shared, own = set(), {}
    for name, tensor in weights.items():
        if _same_tensor(tensor, prepared.get(name)):
            shared.add(name)
        elif name not in in_file:
            own[name] = numpy_helper.to_array(tensor)
    return LoadedModel(skeleton, feeds, frozenset(shared), own, False, from_file)


def without_file_weights(loaded: LoadedModel, analysis: ModelAnalysis) -> ModelAnalysis:
    """``analysis`` whose model holds no bytes of the shared weights the oracle reads from the file (their
    names, types and shapes kept): for the oracle alone, once pruning is done. Dropping the old analysis
    then frees those bytes. ``analysis`` itself when the file holds none of them."""
    names = loaded.shared & (loaded.from_file.spans.keys() if loaded.from_file is not None else set())
    return replace(analysis, model=hollow_copy(analysis.model, names)) if names else analysis


def _same_tensor(tensor: onnx.TensorProto, twin: onnx.TensorProto | None) -> bool:
    """Same element type, shape and bytes (one tensor's bytes in memory twice, briefly)."""
    if twin is None or twin.data_type != tensor.data_type or list(twin.dims) != list(tensor.dims):
        return False
    if tensor.HasField("raw_data") and twin.HasField("raw_data"):
        return tensor.raw_data == twin.raw_data
    mine, theirs = numpy_helper.to_array(tensor), numpy_helper.to_array(twin)
    return mine.tobytes() == theirs.tobytes()
