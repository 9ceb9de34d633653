"""Re-estimate BatchNormalization statistics of a pruned model on a few batches, all in ONNX.

Pruning without fine-tuning shifts every downstream activation distribution, so stored running
statistics no longer match (the pruned model's accuracy collapses). ``ExposeBatchNormStatsPass`` builds a
calibration copy in which each BatchNormalization runs with ``training_mode=1`` and ``momentum=0``:
onnxruntime then normalises with the batch statistics (so each layer sees inputs already normalised by
re-estimated upstream layers, as a torch ``train()`` forward would) and returns them as the graph's
outputs. Their average over the batches becomes the pruned model's new mean and variance
(``SetBatchNormStatsPass``). ``CleanupPass`` drops what either leaves unused.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from agmc_onnx.cost.profiles import TargetProfile
from agmc_onnx.cost.session import create_session
from agmc_onnx.data import ImageDataset, PreprocessSpec, balanced_order, to_model_input
from agmc_onnx.errors import PostconditionError, PreconditionError
from agmc_onnx.passes.base import GraphPass, PassManager, PassResult
from agmc_onnx.passes.cleanup import CleanupPass

__all__ = [
    "recalibrate_batchnorm",
    "batchnorm_nodes",
    "calibration_batches",
    "ExposeBatchNormStatsPass",
    "SetBatchNormStatsPass",
]

_MIN_OPSET = 14  # training_mode on BatchNormalization


def calibration_batches(
    dataset: ImageDataset, spec: PreprocessSpec, n_images: int = 256, batch_size: int = 128
) -> tuple[tuple[np.ndarray, ...], list[np.ndarray]]:
    """(row indices, model inputs) of class-balanced calibration batches drawn from ``dataset``.

    Every batch is class-balanced (seeded): datasets are often ordered by class, and statistics measured
    on a few classes would mis-normalise the rest.
    """
    order = balanced_order(dataset.labels, seed=0)[:n_images]
    rows = tuple(order[i : i + batch_size] for i in range(0, len(order), batch_size))
    return rows, [to_model_input(dataset.images[r], spec) for r in rows]


def batchnorm_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [node for node in model.graph.node if node.op_type == "BatchNormalization"]


def _batchnorms(graph: gs.Graph) -> list[gs.Node]:
    return [node for node in graph.nodes if node.op == "BatchNormalization"]


class ExposeBatchNormStatsPass(GraphPass):
    """Each BatchNormalization normalises with its batch's statistics; the graph outputs them, in order."""

    def requires(self, graph: gs.Graph) -> None:
        if _batchnorms(graph) and graph.opset < _MIN_OPSET:
            raise PreconditionError(
                f"BatchNormalization re-estimation needs opset ≥ {_MIN_OPSET} (training_mode), the model has "
                f"opset {graph.opset}; convert it with onnx.version_converter or disable re-estimation"
            )

    def call(self, graph: gs.Graph) -> PassResult:
        outputs = []
        for index, node in enumerate(_batchnorms(graph)):
            mean = gs.Variable(f"__recal_mean_{index}", dtype=np.float32)
            var = gs.Variable(f"__recal_var_{index}", dtype=np.float32)
            while len(node.outputs) > 1:  # graphsurgeon's synchronised lists delete one item at a time
                node.outputs.pop()
            node.outputs.extend([mean, var])
            node.attrs["training_mode"] = 1
            node.attrs["momentum"] = 0.0
            outputs += [mean, var]
        graph.outputs = outputs
        return PassResult(graph, bool(outputs), {"batchnorms": len(outputs) // 2})

    def ensures(self, graph: gs.Graph) -> None:
        if len(graph.outputs) != 2 * len(_batchnorms(graph)):
            raise PostconditionError("a BatchNormalization's statistics are not graph outputs")


class SetBatchNormStatsPass(GraphPass):
    """Give the i-th BatchNormalization fresh mean/var constants: ``stats[i]`` (never shared, so statistics
    aliased between nodes in the original are not overwritten for another node)."""

    def __init__(self, stats: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        self.stats = tuple(stats)

    def requires(self, graph: gs.Graph) -> None:
        if len(_batchnorms(graph)) != len(self.stats):
            raise PreconditionError(
                f"{len(self.stats)} measured statistics for {len(_batchnorms(graph))} BatchNormalization nodes"
            )

    def call(self, graph: gs.Graph) -> PassResult:
        for index, (node, (mean, var)) in enumerate(zip(_batchnorms(graph), self.stats)):
            label = node.name or index
            node.inputs[3] = gs.Constant(f"{label}__recal_mean", np.asarray(mean, dtype=np.float32))
            node.inputs[4] = gs.Constant(f"{label}__recal_var", np.asarray(var, dtype=np.float32))
        return PassResult(graph, bool(self.stats), {"batchnorms": len(self.stats)})


def recalibrate_batchnorm(
    model: onnx.ModelProto, batches: Iterable[np.ndarray], profile: TargetProfile | None = None
) -> onnx.ModelProto:
    """A copy of ``model`` whose BatchNormalization mean/var are the averages measured on ``batches``."""
    if not batchnorm_nodes(model):
        return model
    calibration, _ = PassManager([ExposeBatchNormStatsPass(), CleanupPass()]).run(model)
    session = create_session(calibration, profile)
    input_name = session.get_inputs()[0].name
    output_names = [value.name for value in calibration.graph.output]
    sums: list[np.ndarray] | None = None
    n_batches = 0
    for batch in batches:
        values = session.run(output_names, {input_name: batch})
        sums = (
            [v.astype(np.float64) for v in values] if sums is None else [s + v for s, v in zip(sums, values)]
        )
        n_batches += 1
    if sums is None:
        raise PreconditionError("BatchNormalization re-estimation got no calibration batches")
    averages = [(s / n_batches).astype(np.float32) for s in sums]
    stats = list(zip(averages[0::2], averages[1::2]))
    recalibrated, _ = PassManager([SetBatchNormStatsPass(stats), CleanupPass()]).run(model)
    return recalibrated
