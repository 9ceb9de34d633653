"""``ReestimateBatchNormPass``: BatchNormalization mean/var re-measured on calibration batches, in ONNX.

Pruning without fine-tuning shifts every downstream activation distribution, so stored running
statistics no longer match (the pruned model's accuracy collapses). A calibration copy switches each
BatchNormalization to ``training_mode=1`` with ``momentum=0``: onnxruntime then normalises with the batch
statistics (so each layer sees inputs already normalised by re-estimated upstream layers, as a torch
``train()`` forward would) and returns them as extra outputs. Their average over the batches becomes the
model's new mean and variance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from agmc_onnx.cost.profiles import TargetProfile
from agmc_onnx.cost.session import create_session
from agmc_onnx.errors import PostconditionError, PreconditionError
from agmc_onnx.graph.versions import default_opset
from agmc_onnx.passes.base import ModelPass, ModelPassResult

__all__ = ["ReestimateBatchNormPass", "batchnorm_nodes"]

_MIN_OPSET = 14  # training_mode on BatchNormalization

Batch = np.ndarray | Mapping[str, np.ndarray]


def batchnorm_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [node for node in model.graph.node if node.op_type == "BatchNormalization"]


class ReestimateBatchNormPass(ModelPass):
    """Each BatchNormalization's mean/var become the averages measured on ``batches`` (arrays for the first
    input, or feeds keyed by input name), run on ``profile``'s onnxruntime settings.

    Each BatchNormalization gets fresh, uniquely named mean/var initializers, so statistics shared
    (aliased) between nodes in the original are never overwritten for another node; the old ones go
    when nothing else reads them.
    """

    def __init__(self, batches: Iterable[Batch], profile: TargetProfile | None = None) -> None:
        self.batches = tuple(batches)
        self.profile = profile

    def requires(self, model: onnx.ModelProto) -> None:
        if not batchnorm_nodes(model):
            return
        if default_opset(model) < _MIN_OPSET:
            raise PreconditionError(
                f"BatchNormalization re-estimation needs opset ≥ {_MIN_OPSET} (training_mode), the model has "
                f"opset {default_opset(model)}; convert it with onnx.version_converter or disable re-estimation"
            )
        if not self.batches:
            raise PreconditionError("BatchNormalization re-estimation got no calibration batches")

    def call(self, model: onnx.ModelProto) -> ModelPassResult:
        nodes = batchnorm_nodes(model)
        if not nodes:
            return ModelPassResult(model, False)
        stats = self._measure(model)
        for index, (node, (mean, var)) in enumerate(zip(nodes, stats)):
            for position, name, values in (
                (3, f"{node.name or index}__recal_mean", mean),
                (4, f"{node.name or index}__recal_var", var),
            ):
                model.graph.initializer.append(numpy_helper.from_array(values, name))
                node.input[position] = name
        dropped = _drop_unused_initializers(model)
        return ModelPassResult(model, True, {"batchnorms": len(nodes), "dropped_initializers": dropped})

    def ensures(self, model: onnx.ModelProto) -> None:
        names = [node.input[k] for node in batchnorm_nodes(model) for k in (3, 4)]
        initializers = {init.name: init for init in model.graph.initializer}
        shared = {name for name in names if names.count(name) > 1}
        if shared:
            raise PostconditionError(f"BatchNormalization statistics {sorted(shared)} are shared between nodes")
        missing = [name for name in names if name not in initializers or len(initializers[name].dims) != 1]
        if missing:
            raise PostconditionError(f"BatchNormalization statistics {missing} are not 1-D initializers")

    def _measure(self, model: onnx.ModelProto) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per BatchNormalization, in graph order: (mean, var) averaged over the batches, float32."""
        calibration, output_names = _calibration_copy(model)
        session = create_session(calibration, self.profile)
        input_name = session.get_inputs()[0].name
        sums: list[np.ndarray] | None = None
        for batch in self.batches:
            values = session.run(output_names, batch if isinstance(batch, Mapping) else {input_name: batch})
            sums = [v.astype(np.float64) for v in values] if sums is None else [s + v for s, v in zip(sums, values)]
        averages = [(s / len(self.batches)).astype(np.float32) for s in sums]
        return list(zip(averages[0::2], averages[1::2]))


def _calibration_copy(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """A copy whose outputs are every BatchNormalization's batch mean and variance, in graph order."""
    calib = onnx.ModelProto()
    calib.CopyFrom(model)
    del calib.graph.output[:]
    output_names = []
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
        output_names += [mean_name, var_name]
    # Stale inferred shapes of the now-dropped outputs would only confuse onnxruntime.
    del calib.graph.value_info[:]
    return calib, output_names


def _drop_unused_initializers(model: onnx.ModelProto) -> int:
    """Remove initializers (and their graph-input entries) nothing reads; how many went."""
    used = {name for node in model.graph.node for name in node.input}
    used |= {value.name for value in model.graph.output}
    dropped = {init.name for init in model.graph.initializer if init.name not in used}
    if not dropped:
        return 0
    kept = [init for init in model.graph.initializer if init.name not in dropped]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    inputs = [value for value in model.graph.input if value.name not in dropped]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    return len(dropped)
