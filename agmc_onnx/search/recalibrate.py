"""Re-estimate BatchNormalization statistics of a pruned model on a few batches, all in ONNX.

Pruning without fine-tuning shifts every downstream activation distribution, so stored running
statistics no longer match (the pruned model's accuracy collapses). A calibration copy switches each
BatchNormalization to ``training_mode=1`` with ``momentum=0``: onnxruntime then normalises with the batch
statistics (so each layer sees inputs already normalised by re-estimated upstream layers, as a torch
``train()`` forward would) and returns them as extra outputs. Their average over the batches becomes the
pruned model's new mean and variance.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from agmc_onnx.cost.profiles import TargetProfile
from agmc_onnx.cost.session import create_session
from agmc_onnx.data import ImageDataset, PreprocessSpec, balanced_order, to_model_input
from agmc_onnx.data.feeds import Feeder
from agmc_onnx.errors import PreconditionError

__all__ = ["recalibrate_batchnorm", "batchnorm_nodes", "calibration_batches", "calibration_feeds"]

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


def calibration_feeds(feeder: Feeder, n_samples: int = 256, batch_size: int = 128) -> list[dict[str, np.ndarray]]:
    """Feeds of seeded, shuffled calibration batches from any dataset bound to a model (``Feeder``)."""
    order = balanced_order(feeder.dataset.labels, seed=0)[:n_samples]
    return [feeder.feeds(np.sort(order[i : i + batch_size])) for i in range(0, len(order), batch_size)]


def batchnorm_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [node for node in model.graph.node if node.op_type == "BatchNormalization"]


def _default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _calibration_copy(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[tuple[str, str]]]:
    calib = onnx.ModelProto()
    calib.CopyFrom(model)
    del calib.graph.output[:]
    stat_names = []
    for index, node in enumerate(batchnorm_nodes(calib)):
        mean_name, var_name = f"__recal_mean_{index}", f"__recal_var_{index}"
        del node.output[1:]
        node.output.extend([mean_name, var_name])
        kept = [a for a in node.attribute if a.name not in ("training_mode", "momentum")]
        del node.attribute[:]
        node.attribute.extend(
            kept + [helper.make_attribute("training_mode", 1), helper.make_attribute("momentum", 0.0)]
        )
        for name in (mean_name, var_name):
            calib.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
        stat_names.append((mean_name, var_name))
    # Stale inferred shapes of the now-dropped outputs would only confuse onnxruntime.
    del calib.graph.value_info[:]
    return calib, stat_names


def recalibrate_batchnorm(
    model: onnx.ModelProto, batches: Iterable[np.ndarray | dict[str, np.ndarray]], profile: TargetProfile | None = None
) -> onnx.ModelProto:
    """A copy of ``model`` whose BatchNormalization mean/var are the averages measured on ``batches``
    (arrays for the first input, or feeds keyed by input name).

    Each BatchNormalization gets fresh, uniquely named mean/var initializers, so statistics shared
    (aliased) between nodes in the original are never overwritten for another node.
    """
    nodes = batchnorm_nodes(model)
    if not nodes:
        return model
    if _default_opset(model) < _MIN_OPSET:
        raise PreconditionError(
            f"BatchNormalization re-estimation needs opset ≥ {_MIN_OPSET} (training_mode), the model has "
            f"opset {_default_opset(model)}; convert it with onnx.version_converter or disable re-estimation"
        )
    calib, stat_names = _calibration_copy(model)
    session = create_session(calib, profile)
    input_name = session.get_inputs()[0].name
    output_names = [name for pair in stat_names for name in pair]
    sums: list[np.ndarray] | None = None
    n_batches = 0
    for batch in batches:
        values = session.run(output_names, batch if isinstance(batch, dict) else {input_name: batch})
        sums = (
            [v.astype(np.float64) for v in values] if sums is None else [s + v for s, v in zip(sums, values)]
        )
        n_batches += 1
    if sums is None:
        raise PreconditionError("BatchNormalization re-estimation got no calibration batches")
    result = onnx.ModelProto()
    result.CopyFrom(model)
    for index, node in enumerate(batchnorm_nodes(result)):
        mean = (sums[2 * index] / n_batches).astype(np.float32)
        var = (sums[2 * index + 1] / n_batches).astype(np.float32)
        for position, name, values in (
            (3, f"{node.name or index}__recal_mean", mean),
            (4, f"{node.name or index}__recal_var", var),
        ):
            result.graph.initializer.append(numpy_helper.from_array(values, name))
            node.input[position] = name
    return _drop_unused_initializers(result)


def _drop_unused_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    used = {name for node in model.graph.node for name in node.input}
    used |= {value.name for value in model.graph.output}
    dropped = {init.name for init in model.graph.initializer if init.name not in used}
    if not dropped:
        return model
    kept = [init for init in model.graph.initializer if init.name not in dropped]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    inputs = [value for value in model.graph.input if value.name not in dropped]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    return model
