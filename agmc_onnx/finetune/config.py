"""Fine-tuning settings, the pixel normalisation, and what a run reports back."""

from __future__ import annotations

import math
from dataclasses import dataclass

import onnx

from agmc_onnx.errors import PreconditionError
from agmc_onnx.progress import CountedProgress

__all__ = ["FinetuneConfig", "Normalization", "EpochRecord", "FinetuneProgress", "FinetuneResult"]


@dataclass(frozen=True)
class FinetuneConfig:
    """SGD with momentum on a per-step cosine schedule; optional distillation from a teacher model.

    ``distill_weight`` is the share of the loss taken by the KL term (the rest is cross-entropy); it only
    applies when a teacher is given, as does ``feature_distill_weight`` (pure distillation without labels,
    ``distill``, does not use it). ``val_fraction`` of the training images is held out (seeded) for
    best-epoch selection when no validation arrays are passed. ``device`` is "auto", "cpu" or "cuda[:n]";
    bf16 autocast is used on CUDA when ``mixed_precision`` is set.
    """

    epochs: int = 1
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    label_smoothing: float = 0.0
    distill_weight: float = 0.5
    distill_temperature: float = 4.0
    seed: int = 0
    device: str = "auto"
    mixed_precision: bool = True
    val_fraction: float = 0.02
    eval_batch_size: int = 500
    crop_padding_px: int = 4
    horizontal_flip: bool = True
    # share of the steps over which the learning rate rises linearly to ``lr`` before the cosine decay
    warmup_fraction: float = 0.0
    # weight of the intermediate-feature term (labelled data and a teacher): the squared error of every
    # residual sum (Add output) the student and teacher share at the same shape, relative to the teacher's
    # mean square. ResNet-56 at 50 % MACs, one epoch, three seeds: 0 87.6 %, 5 88.3 %, 20 88.7 % (mean).
    feature_distill_weight: float = 20.0

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            problems.append(f"batch sizes must be at least 1, got {self.batch_size}/{self.eval_batch_size}")
        if not self.lr > 0:
            problems.append(f"lr must be positive, got {self.lr}")
        if not 0.0 <= self.distill_weight <= 1.0:
            problems.append(f"distill_weight must lie in [0, 1], got {self.distill_weight}")
        if not self.distill_temperature > 0:
            problems.append(f"distill_temperature must be positive, got {self.distill_temperature}")
        if not 0.0 <= self.val_fraction < 1.0:
            problems.append(f"val_fraction must lie in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.label_smoothing < 1.0:
            problems.append(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            problems.append(f"warmup_fraction must lie in [0, 1), got {self.warmup_fraction}")
        if self.feature_distill_weight < 0:
            problems.append(f"feature_distill_weight must be >= 0, got {self.feature_distill_weight}")
        if self.crop_padding_px < 0:
            problems.append(f"crop_padding_px must be >= 0, got {self.crop_padding_px}")
        if problems:
            raise PreconditionError("invalid fine-tuning configuration: " + "; ".join(problems))


@dataclass(frozen=True)
class Normalization:
    """pixel -> pixel * scale, then (x - mean) / std per channel (the ``preprocessing`` metadata's terms);
    ``layout`` is the model input's (NCHW or NHWC)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1.0 / 255.0
    layout: str = "NCHW"

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or any(s == 0 for s in self.std):
            raise PreconditionError(
                f"normalization needs one non-zero std per mean, got {self.mean} / {self.std}"
            )


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's numbers; epoch 0 is the starting point (validation only, train fields NaN)."""

    epoch: int
    train_loss: float
    train_top1: float
    val_loss: float
    val_top1: float
    lr: float
    seconds: float


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.2f} %"


@dataclass(frozen=True)
class FinetuneProgress(CountedProgress, stage="finetune", unit="batch"):
    """A ``ProgressEvent`` after every batch (``record`` None) and every epoch (``record`` set)."""

    epoch: int
    epochs: int
    batch: int
    batches: int
    loss: float
    record: EpochRecord | None = None

    @property
    def done(self) -> int:
        return self.batch

    @property
    def total(self) -> int:
        return self.batches

    @property
    def lasting(self) -> bool:
        return self.record is not None

    @property
    def message(self) -> str:
        r = self.record
        if r is None:
            return f"epoch {self.epoch}/{self.epochs} batch {self.batch}/{self.batches}: loss {self.loss:.4f}"
        return (
            f"epoch {r.epoch}/{self.epochs}: train loss {r.train_loss:.4f} top-1 {_percent(r.train_top1)}, "
            f"val loss {r.val_loss:.4f} top-1 {_percent(r.val_top1)}, lr {r.lr:.4g}, {r.seconds:.1f} s"
        )


@dataclass(frozen=True, eq=False)
class FinetuneResult:
    """The fine-tuned model (the input graph with new numbers), per-epoch history and the chosen epoch."""

    model: onnx.ModelProto
    history: tuple[EpochRecord, ...]
    best_epoch: int
    best_val_top1: float
    seconds: float

    @property
    def improved(self) -> bool:
        return self.best_epoch > 0 and not math.isnan(self.best_val_top1)
