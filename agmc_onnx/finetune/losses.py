"""Training losses: cross-entropy, optionally mixed with distillation from a teacher's logits; pure
distillation over all outputs for label-free fine-tuning."""

from __future__ import annotations

import onnx
import torch
import torch.nn.functional as F

from agmc_onnx.errors import PreconditionError

__all__ = [
    "training_loss",
    "distillation_loss",
    "is_logit_vector",
    "feature_loss",
    "shared_residual_sums",
    "kept_part",
]


def training_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None = None,
    *,
    label_smoothing: float = 0.0,
    distill_weight: float = 0.5,
    temperature: float = 4.0,
) -> torch.Tensor:
    """(1 - w)·CE + w·T²·KL(teacher_T ‖ student_T), or plain CE without a teacher.

    The T² factor keeps the distillation gradients' size independent of the temperature (Hinton et al.).
    """
    cross_entropy = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    if teacher_logits is None or distill_weight == 0.0:
        return cross_entropy
    student_log_probs = F.log_softmax(logits / temperature, dim=1)
    teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="batchmean")
    return (1.0 - distill_weight) * cross_entropy + distill_weight * temperature**2 * kl


def distillation_loss(
    student: tuple[torch.Tensor, ...], teacher: tuple[torch.Tensor, ...], *, temperature: float = 4.0
) -> torch.Tensor:
    """Pure distillation over every float output: no labels involved.

    One logit-vector output (N×K, or N×K×1×1): T²·KL(teacher_T ‖ student_T). Otherwise the mean over
    float outputs of the squared error relative to the teacher's mean square, so outputs of any scale
    weigh the same. Integer and boolean outputs carry no gradient and are skipped.
    """
    pairs = [(s.float(), t.float()) for s, t in zip(student, teacher) if t.is_floating_point()]
    if not pairs:
        raise PreconditionError("the model has no float output to distil (all outputs are integer or boolean)")
    if len(student) == 1 and is_logit_vector(pairs[0][1]):
        s, t = (x.reshape(len(x), -1) for x in pairs[0])
        kl = F.kl_div(
            F.log_softmax(s / temperature, dim=1),
            F.log_softmax(t / temperature, dim=1),
            log_target=True,
            reduction="batchmean",
        )
        return temperature**2 * kl
    terms = [_relative_squared_error(s, t) for s, t in pairs]
    return torch.stack(terms).mean()


def is_logit_vector(value: torch.Tensor) -> bool:
    """N×K or N×K×1×1 with K > 1: the output of a classifier head."""
    vector = value.dim() == 2 or (value.dim() == 4 and tuple(value.shape[2:]) == (1, 1))
    return vector and value.shape[1] > 1


def _relative_squared_error(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared error relative to the teacher's mean square: tensors of any scale weigh the same."""
    return ((student - teacher) ** 2).mean() / ((teacher**2).mean() + 1e-8)


def shared_residual_sums(student: onnx.ModelProto, teacher: onnx.ModelProto) -> frozenset[str]:
    """Names of the Add outputs both graphs compute (pruning keeps names): the blocks' residual sums."""

    def sums(model: onnx.ModelProto) -> set[str]:
        return {out for node in model.graph.node if node.op_type == "Add" for out in node.output if out}

    return frozenset(sums(student) & sums(teacher))


def feature_loss(student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over the tensors both hold at the same shape of the squared error relative to the teacher's
    mean square (so every block weighs the same whatever its scale); 0 when none match."""
    terms = [
        _relative_squared_error(student[name].float(), t.float())
        for name, t in teacher.items()
        if name in student and student[name].shape == t.shape
    ]
    return torch.stack(terms).mean() if terms else torch.zeros(())


def kept_part(student: torch.Tensor, teacher: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """The teacher's tensor restricted to the channels the student kept (``kept``: original positions, in
    the student's order), along the one axis where the student has ``len(kept)`` and the teacher more;
    the teacher's tensor unchanged when no axis fits."""
    if student.dim() != teacher.dim() or len(kept) == 0:
        return teacher
    last = int(kept.max())
    axes = [
        axis
        for axis, (s, t) in enumerate(zip(student.shape, teacher.shape))
        if s != t and s == len(kept) and t > last
    ]
    return teacher.index_select(axes[0], kept) if len(axes) == 1 else teacher
