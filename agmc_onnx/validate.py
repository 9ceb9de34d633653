"""Validation of every written model, and the equivalence oracle of channel pruning.

The oracle: a pruned model must compute exactly what the original computes when the removed
channels' input weights are zeroed in every consumer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import numpy_helper

from agmc_onnx.analysis import ModelAnalysis
from agmc_onnx.errors import ValidationError
from agmc_onnx.fed import FLOAT_TYPES, FedModel, fed_session, run_fed, split_weights
from agmc_onnx.graph.constants import constant_values
from agmc_onnx.graph.probe import probe_feeds
from agmc_onnx.graph.skeleton import weightless_copy
from agmc_onnx.groups.flow import SliceConstant
from agmc_onnx.loaded_model import ORACLE_BATCH, LoadedModel, detach_loaded_model
from agmc_onnx.passes.base import run_passes
from agmc_onnx.passes.check_model import CheckModelPass
from agmc_onnx.passes.fold_constants import NameNodesPass
from agmc_onnx.passes.mask_consumers import ConsumerMask, MaskConsumersPass, consumer_masks
from agmc_onnx.passes.remove_branches import ZeroBranchesPass
from agmc_onnx.plan import ChannelSelection
from agmc_onnx.ulp import OneUlp

__all__ = [
    "ValidationReport",
    "check_written_model",
    "masked_reference",
    "compare_outputs",
    "validate_pruned",
    "zero_removed_branches",
]

_EPS32 = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class ValidationReport:
    max_abs_diff: float
    output_scale: float
    tolerance: float
    worst_output: str

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def _io_signature(model: onnx.ModelProto) -> list[tuple[str, int, tuple]]:
    signature = []
    for value in model.graph.output:
        dims = tuple(
            d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim
        )
        signature.append((value.name, value.type.tensor_type.elem_type, dims))
    return signature


def check_written_model(original: onnx.ModelProto, written: onnx.ModelProto) -> None:
    """Full ONNX check, its weights decode, an onnxruntime session loads, and outputs keep names,
    dtypes and shapes."""
    _check_structure(original, written)
    split_weights(written, "written model")


def _check_structure(original: onnx.ModelProto, written: onnx.ModelProto) -> None:
    """``check_written_model`` but for decoding the weights (the oracle's run of the model does that)."""
    CheckModelPass()(written)  # leaves ``written`` as it is: no copy
    try:
        fed_session(weightless_copy(written, data_types=FLOAT_TYPES)[0])
    except Exception as exc:  # onnxruntime raises several unrelated exception types
        raise ValidationError(
            f"onnxruntime cannot load the written model: {str(exc).splitlines()[0]}"
        ) from None
    if _io_signature(original) != _io_signature(written):
        raise ValidationError(f"outputs changed: {_io_signature(original)} became {_io_signature(written)}")


def _masks(analysis: ModelAnalysis, selection: ChannelSelection) -> tuple[ConsumerMask, ...]:
    kept = analysis.kept_positions(selection.dropped_roots(analysis.groups))
    lengths = {name: len(analysis.flow.tensors[name]) for name in kept}
    inputs = {node.name: list(node.input) for node in analysis.model.graph.node}
    constants = {init.name: tuple(init.dims) for init in analysis.model.graph.initializer}
    weight_shapes = {
        (edit.node, edit.input_index): constants[inputs[edit.node][edit.input_index]]
        for edit in analysis.flow.edits
        if isinstance(edit, SliceConstant) and edit.consumes and edit.tensor in kept
    }
    return consumer_masks(analysis.flow.edits, kept, lengths, weight_shapes)


def masked_reference(
    model: onnx.ModelProto, analysis: ModelAnalysis, selection: ChannelSelection
) -> onnx.ModelProto:
    """``model`` as the user gave it, with the removed channels' input weights zeroed in every consumer.

    ``analysis`` must be the analysis of ``model``; its edits name nodes that ``NameNodesPass`` names
    the same way in ``model``, so no constant folding stands between the file and the reference. Given
    a weightless skeleton, the masks become ``Mul`` nodes in front of the weights (exact as well).
    """
    return run_passes(model, [NameNodesPass(), MaskConsumersPass(_masks(analysis, selection))])


def zero_removed_branches(
    reference: onnx.ModelProto, analysis: ModelAnalysis, selection: ChannelSelection
) -> onnx.ModelProto:
    """The depth side of the oracle: each removed residual branch's output multiplied by 0."""
    if not selection.removed_branches:
        return reference
    branches = [analysis.depth.branch(b) for b in selection.removed_branches]
    return run_passes(reference, [ZeroBranchesPass(branches)])


def random_inputs(model: onnx.ModelProto, batch_size: int = ORACLE_BATCH, seed: int = 0) -> dict[str, np.ndarray]:
    """Valid probe feeds: random floats, token ids inside their embedding table, masks of ones."""
    return probe_feeds(model, batch_size, seed)


# Float inputs of these operators are perturbed by one unit in the last place to measure how float32
# rounding propagates through the network; structural floats (Resize scales, Range bounds…) are not.
_ARITHMETIC_OPS = frozenset(
    {
        "Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum", "BatchNormalization", "InstanceNormalization",
        "LayerNormalization", "GroupNormalization", "Mul", "Add", "Sub", "PRelu",
    }
)  # fmt: skip
NOISE_FACTOR = 64.0  # tolerance = NOISE_FACTOR x the measured rounding noise (+ a few ulps of the output)
OUTPUT_ULPS = 4.0


def _run(model: onnx.ModelProto | FedModel, feeds: dict[str, np.ndarray], role: str) -> dict[str, np.ndarray]:
    """Outputs in float64; a ``ModelProto`` is split into skeleton and weights for this run only."""
    try:
        fed = model if isinstance(model, FedModel) else split_weights(model, role)
        values = run_fed(fed, feeds)
    except ValidationError:
        raise
    except Exception as exc:  # onnxruntime raises several unrelated exception types
        raise ValidationError(f"onnxruntime cannot run the {role}: {str(exc).splitlines()[0]}") from None
    return {name: np.asarray(value, dtype=np.float64) for name, value in values.items()}


def _perturbable(values: np.ndarray, consumers: list[str]) -> bool:
    floating = values.dtype in (np.float32, np.float64, np.float16) and values.size
    return bool(floating and consumers and all(op in _ARITHMETIC_OPS for op in consumers))


def ulp_perturbed(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """A copy whose arithmetic float constants each move one unit in the last place, up or down at random.

    Two float32 evaluations of one function that differ only in summation order (a pruned convolution
    against its zero-masked original) differ by rounding errors of this size, propagated the same way.
    """
    one_ulp = OneUlp(np.random.default_rng(seed))
    graph = gs.import_onnx(model)
    perturbed: set[str] = set()
    for tensor in graph.tensors().values():
        if not isinstance(tensor, gs.Constant) or tensor.name in perturbed:
            continue
        values = constant_values(tensor)
        if _perturbable(values, [node.op for node in tensor.outputs]):
            tensor.values = one_ulp(values)
            perturbed.add(tensor.name)
    copy = gs.export_onnx(graph, do_type_check=False)
    del copy.opset_import[:]
    copy.opset_import.extend(model.opset_import)
    copy.ir_version = model.ir_version
    return copy


def _perturb_fed(fed: FedModel, seed: int = 0) -> FedModel:
    """``ulp_perturbed`` of a split model; each fed array is replaced in turn (never a second set)."""
    consumers: dict[str, list[str]] = {name: [] for name in fed.weights}
    for node in fed.skeleton.graph.node:
        for name in node.input:
            if name in consumers:
                consumers[name].append(node.op_type)
    one_ulp = OneUlp(np.random.default_rng(seed + 1))
    for name, ops in consumers.items():
        values = fed.weights[name]
        if _perturbable(values, ops):  # arrays made here (masked ones) are perturbed where they lie
            fed.weights[name] = one_ulp(values, in_place=values.flags.writeable and values.flags.c_contiguous)
    return FedModel(ulp_perturbed(fed.skeleton, seed), fed.weights)


def _apply_fed_masks(reference: onnx.ModelProto, weights: dict[str, np.ndarray]) -> FedModel:
    """``reference`` (a skeleton, changed here) with each mask ``Mul`` in front of a fed weight applied to
    the array instead: the product, the float multiplication onnxruntime would repeat on every run, is
    fed under the ``Mul``'s output name, and a weight nothing reads any more leaves ``weights``. No run
    then holds a masked copy of a weight among its activations."""
    graph = reference.graph
    constants = {tensor.name: tensor for tensor in graph.initializer}
    declared = {value.name: value for value in graph.input}
    readers = Counter(name for node in graph.node for name in node.input)
    readers.update(value.name for value in graph.output)
    kept, unread = [], set()
    for node in graph.node:
        weight, factor = (node.input[0], node.input[1]) if len(node.input) == 2 else ("", "")
        if not (node.op_type == "Mul" and "__masking_" in node.name and weight in weights and factor in constants):
            kept.append(node)
            continue
        weights[node.output[0]] = weights[weight] * numpy_helper.to_array(constants[factor])
        value = graph.input.add()
        value.CopyFrom(declared[weight])
        value.name = node.output[0]
        readers[weight] -= 1
        if not readers[weight]:  # let the unmasked array go at once: never two copies of the weights
            del weights[weight]
            unread.add(weight)
    del graph.node[:]
    graph.node.extend(kept)
    inputs = [value for value in graph.input if value.name not in unread]
    del graph.input[:]
    graph.input.extend(inputs)
    computed = [value for value in graph.value_info if value.name not in weights]
    del graph.value_info[:]
    graph.value_info.extend(computed)
    return FedModel(reference, weights)


def _noise(outputs: dict[str, np.ndarray], moved: dict[str, np.ndarray]) -> dict[str, float]:
    return {
        name: float(np.max(np.abs(value - moved[name]))) if value.size else 0.0 for name, value in outputs.items()
    }


def rounding_noise(
    reference: onnx.ModelProto, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray] | None = None
) -> dict[str, float]:
    """Per output, the largest change one-ulp perturbations of every arithmetic constant cause."""
    fed = split_weights(reference, "reference model")
    outputs = outputs if outputs is not None else _run(fed, feeds, "reference model")
    return _noise(outputs, _run(_perturb_fed(fed), feeds, "perturbed reference model"))


def _report(
    ref_out: dict[str, np.ndarray], cand_out: dict[str, np.ndarray], noise: dict[str, float] | None
) -> ValidationReport:
    """The output with the largest diff/tolerance; without ``noise`` the comparison is exact."""
    worst = ValidationReport(0.0, 0.0, 0.0, "")
    worst_ratio = -1.0
    exact = noise is None
    for name, a in ref_out.items():
        b = cand_out[name]
        if a.shape != b.shape:
            raise ValidationError(f"output '{name}' has shape {b.shape}, expected {a.shape}", name)
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        scale = float(np.max(np.abs(a))) if a.size else 0.0
        tolerance = 0.0 if exact else NOISE_FACTOR * noise[name] + OUTPUT_ULPS * _EPS32 * scale
        ratio = diff / tolerance if tolerance > 0 else (np.inf if diff > 0 else 0.0)
        if ratio > worst_ratio:
            worst, worst_ratio = ValidationReport(diff, scale, tolerance, name), ratio
    return worst


def compare_outputs(
    reference: onnx.ModelProto, candidate: onnx.ModelProto, feeds: dict[str, np.ndarray], exact: bool = False
) -> ValidationReport:
    """Max absolute difference of every output against a tolerance grounded in float32 rounding.

    Each output's tolerance is ``NOISE_FACTOR`` times the change that one-ulp perturbations of the
    reference's arithmetic constants cause in it (rounding noise propagated through this very network,
    cancellations and saturations included) plus ``OUTPUT_ULPS`` ulps of the output's own magnitude.
    With ``exact`` the tolerance is zero. The report names the output with the largest diff/tolerance.
    """
    ref_out, cand_out = _run(reference, feeds, "reference model"), _run(candidate, feeds, "written model")
    return _report(ref_out, cand_out, None if exact else rounding_noise(reference, feeds, ref_out))


def _folding_error(report: ValidationReport) -> ValidationError:
    return ValidationError(
        f"constant folding changed output '{report.worst_output}' of the loaded model: "
        f"max |diff| {report.max_abs_diff:.3g}",
        report.worst_output,
        report.max_abs_diff,
    )


def check_folding(original: onnx.ModelProto, analysis: ModelAnalysis, feeds: dict[str, np.ndarray]) -> None:
    """The prepared (constant-folded) model computes exactly what the loaded model computes."""
    loaded = detach_loaded_model(original, analysis)
    _check_prepared(loaded, analysis, FedModel(loaded.skeleton, loaded.weights(analysis.model)), feeds)


def _check_prepared(
    loaded: LoadedModel, analysis: ModelAnalysis, fed: FedModel, feeds: dict[str, np.ndarray]
) -> None:
    """``check_folding`` on the loaded model as ``fed``; the prepared model runs on the same arrays where
    its weights are the same."""
    if loaded.is_prepared:
        return
    skeleton, moved = weightless_copy(analysis.model, data_types=FLOAT_TYPES)
    weights = {n: fed.weights[n] for n in moved & loaded.shared}
    tensors = analysis.model.graph.initializer
    weights.update((t.name, numpy_helper.to_array(t)) for t in tensors if t.name in moved - loaded.shared)
    prepared = FedModel(skeleton, weights)
    del weights
    folded = _run(prepared, feeds, "prepared model")
    del prepared
    report = _report(_run(fed, feeds, "loaded model"), folded, None)
    if not report.passed:
        raise _folding_error(report)


def _reference_outputs(
    loaded: LoadedModel, analysis: ModelAnalysis, selection: ChannelSelection
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Folding checked, then the masked reference's outputs and rounding noise, on one set of weights.

    The loaded model, its masked reference and the perturbed reference run as skeletons fed one set of
    arrays: the masks are applied to the arrays (one at a time), then each array is perturbed; only one
    copy of the weights exists beside the models themselves, as in ``ulp_perturbed(masked_reference)``.
    """
    fed = FedModel(loaded.skeleton, loaded.weights(analysis.model))
    _check_prepared(loaded, analysis, fed, loaded.feeds)
    reference = _apply_fed_masks(masked_reference(fed.skeleton, analysis, selection), fed.weights)
    reference.skeleton = zero_removed_branches(reference.skeleton, analysis, selection)
    outputs = _run(reference, loaded.feeds, "reference model")
    moved_outputs = _run(_perturb_fed(reference), loaded.feeds, "perturbed reference model")
    return outputs, _noise(outputs, moved_outputs)


def validate_pruned(
    original: onnx.ModelProto | LoadedModel,
    analysis: ModelAnalysis,
    selection: ChannelSelection,
    pruned: onnx.ModelProto,
) -> ValidationReport:
    """Every check a written pruned model must pass; raises ``ValidationError`` on the first failure.

    ``original`` is the model as loaded (or what ``detach_loaded_model`` kept of it) and ``analysis`` its
    analysis. The folded copy the pruning rewrote must equal ``original`` exactly, and the pruned model
    must equal ``original`` with the removed channels' consumer weights zeroed, on the same random inputs.
    """
    loaded = original if isinstance(original, LoadedModel) else detach_loaded_model(original, analysis)
    _check_structure(loaded.skeleton, pruned)
    ref_out, noise = _reference_outputs(loaded, analysis, selection)
    report = _report(ref_out, _run(pruned, loaded.feeds, "written model"), noise)
    if not report.passed:
        raise ValidationError(
            f"pruned model differs from the masked original on '{report.worst_output}': "
            f"max |diff| {report.max_abs_diff:.3g} > tolerance {report.tolerance:.3g}",
            report.worst_output,
            report.max_abs_diff,
        )
    return report


__all__ += ["random_inputs", "check_folding", "rounding_noise", "ulp_perturbed"]
