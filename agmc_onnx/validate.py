"""Validation of every written model, and the equivalence oracle of channel pruning.

The oracle: a pruned model must compute exactly what the original computes when the removed
channels' input weights are zeroed in every consumer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort

from agmc_onnx.analysis import ModelAnalysis
from agmc_onnx.errors import ValidationError
from agmc_onnx.graph.probe import probe_feeds
from agmc_onnx.groups.flow import SliceConstant
from agmc_onnx.passes.base import run_passes
from agmc_onnx.passes.check_model import CheckModelPass
from agmc_onnx.passes.fold_constants import NameNodesPass
from agmc_onnx.passes.mask_consumers import MaskConsumersPass, consumer_masks
from agmc_onnx.passes.remove_branches import ZeroBranchesPass
from agmc_onnx.plan import ChannelSelection

__all__ = [
    "ValidationReport",
    "check_written_model",
    "masked_reference",
    "compare_outputs",
    "validate_pruned",
    "zero_removed_branches",
]

_EPS32 = float(np.finfo(np.float32).eps)
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}


@dataclass(frozen=True)
class ValidationReport:
    max_abs_diff: float
    output_scale: float
    tolerance: float
    worst_output: str

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 4  # onnxruntime prints its errors itself; they come back as exceptions
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _io_signature(model: onnx.ModelProto) -> list[tuple[str, int, tuple]]:
    signature = []
    for value in model.graph.output:
        dims = tuple(
            d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim
        )
        signature.append((value.name, value.type.tensor_type.elem_type, dims))
    return signature


def check_written_model(original: onnx.ModelProto, written: onnx.ModelProto) -> None:
    """Full ONNX check, an onnxruntime session loads, and outputs keep names, dtypes and shapes."""
    CheckModelPass()(written)  # leaves ``written`` as it is: no copy
    try:
        _session(written)
    except Exception as exc:  # onnxruntime raises several unrelated exception types
        raise ValidationError(
            f"onnxruntime cannot load the written model: {str(exc).splitlines()[0]}"
        ) from None
    if _io_signature(original) != _io_signature(written):
        raise ValidationError(f"outputs changed: {_io_signature(original)} became {_io_signature(written)}")


def masked_reference(
    model: onnx.ModelProto, analysis: ModelAnalysis, selection: ChannelSelection
) -> onnx.ModelProto:
    """``model`` as the user gave it, with the removed channels' input weights zeroed in every consumer.

    ``analysis`` must be the analysis of ``model``; its edits name nodes that ``NameNodesPass`` names
    the same way in ``model``, so no constant folding stands between the file and the reference.
    """
    kept = analysis.kept_positions(selection.dropped_roots(analysis.groups))
    lengths = {name: len(analysis.flow.tensors[name]) for name in kept}
    inputs = {node.name: list(node.input) for node in analysis.model.graph.node}
    constants = {init.name: tuple(init.dims) for init in analysis.model.graph.initializer}
    weight_shapes = {
        (edit.node, edit.input_index): constants[inputs[edit.node][edit.input_index]]
        for edit in analysis.flow.edits
        if isinstance(edit, SliceConstant) and edit.consumes and edit.tensor in kept
    }
    masks = consumer_masks(analysis.flow.edits, kept, lengths, weight_shapes)
    return run_passes(model, [NameNodesPass(), MaskConsumersPass(masks)])


def zero_removed_branches(
    reference: onnx.ModelProto, analysis: ModelAnalysis, selection: ChannelSelection
) -> onnx.ModelProto:
    """The depth side of the oracle: each removed residual branch's output multiplied by 0."""
    if not selection.removed_branches:
        return reference
    branches = [analysis.depth.branch(b) for b in selection.removed_branches]
    return run_passes(reference, [ZeroBranchesPass(branches)])


def random_inputs(model: onnx.ModelProto, batch_size: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
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


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray], role: str) -> dict[str, np.ndarray]:
    try:
        session = _session(model)
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, feeds)
    except Exception as exc:  # onnxruntime raises several unrelated exception types
        raise ValidationError(f"onnxruntime cannot run the {role}: {str(exc).splitlines()[0]}") from None
    return {n: np.asarray(v, dtype=np.float64) for n, v in zip(names, values)}


def ulp_perturbed(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """A copy whose arithmetic float constants each move one unit in the last place, up or down at random.

    Two float32 evaluations of one function that differ only in summation order (a pruned convolution
    against its zero-masked original) differ by rounding errors of this size, propagated the same way.
    """
    rng = np.random.default_rng(seed)
    graph = gs.import_onnx(model)
    perturbed: set[str] = set()
    for tensor in graph.tensors().values():
        if not isinstance(tensor, gs.Constant) or tensor.name in perturbed:
            continue
        values = np.asarray(tensor.values)
        if values.dtype not in (np.float32, np.float64, np.float16) or not values.size:
            continue
        if not tensor.outputs or any(node.op not in _ARITHMETIC_OPS for node in tensor.outputs):
            continue
        direction = np.where(rng.random(values.shape) < 0.5, -np.inf, np.inf).astype(values.dtype)
        tensor.values = np.nextafter(values, direction)
        perturbed.add(tensor.name)
    copy = gs.export_onnx(graph, do_type_check=False)
    del copy.opset_import[:]
    copy.opset_import.extend(model.opset_import)
    copy.ir_version = model.ir_version
    return copy


def rounding_noise(
    reference: onnx.ModelProto, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray] | None = None
) -> dict[str, float]:
    """Per output, the largest change one-ulp perturbations of every arithmetic constant cause."""
    outputs = outputs if outputs is not None else _run(reference, feeds, "reference model")
    moved = _run(ulp_perturbed(reference), feeds, "perturbed reference model")
    return {
        name: float(np.max(np.abs(value - moved[name]))) if value.size else 0.0 for name, value in outputs.items()
    }


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
    noise = {name: 0.0 for name in ref_out} if exact else rounding_noise(reference, feeds, ref_out)
    worst = ValidationReport(0.0, 0.0, 0.0, "")
    worst_ratio = -1.0
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


def check_folding(original: onnx.ModelProto, analysis: ModelAnalysis, feeds: dict[str, np.ndarray]) -> None:
    """The prepared (constant-folded) model computes exactly what the loaded model computes."""
    report = compare_outputs(original, analysis.model, feeds, exact=True)
    if not report.passed:
        raise ValidationError(
            f"constant folding changed output '{report.worst_output}' of the loaded model: "
            f"max |diff| {report.max_abs_diff:.3g}",
            report.worst_output,
            report.max_abs_diff,
        )


def validate_pruned(
    original: onnx.ModelProto, analysis: ModelAnalysis, selection: ChannelSelection, pruned: onnx.ModelProto
) -> ValidationReport:
    """Every check a written pruned model must pass; raises ``ValidationError`` on the first failure.

    ``original`` is the model as loaded and ``analysis`` its analysis. The folded copy the pruning
    rewrote must equal ``original`` exactly, and the pruned model must equal ``original`` with the
    removed channels' consumer weights zeroed, on the same random inputs.
    """
    check_written_model(original, pruned)
    feeds = random_inputs(original)
    check_folding(original, analysis, feeds)
    reference = zero_removed_branches(masked_reference(original, analysis, selection), analysis, selection)
    report = compare_outputs(reference, pruned, feeds)
    if not report.passed:
        raise ValidationError(
            f"pruned model differs from the masked original on '{report.worst_output}': "
            f"max |diff| {report.max_abs_diff:.3g} > tolerance {report.tolerance:.3g}",
            report.worst_output,
            report.max_abs_diff,
        )
    return report


__all__ += ["random_inputs", "check_folding", "rounding_noise", "ulp_perturbed"]
