"""Training losses: cross-entropy, optionally mixed with distillation from a teacher's logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["training_loss"]


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
