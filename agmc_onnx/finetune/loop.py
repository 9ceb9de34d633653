"""``finetune``: train an ONNX model's numbers through torch and write them back into the same graph.

Data arrives as uint8 N×H×W×C arrays with int64 labels plus a ``Normalization``; a seeded share of it is
held out for validation, evaluated after every epoch, and the best epoch's values are written back
(epoch 0, the starting point, competes too). Randomness is seeded per epoch, so a run resumed from a
checkpoint ends exactly where an uninterrupted run ends.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from agmc_onnx.errors import DataError
from agmc_onnx.finetune.augment import normalize, random_crop_flip
from agmc_onnx.finetune.checkpoint import run_fingerprint
from agmc_onnx.finetune.config import EpochRecord, FinetuneConfig, FinetuneProgress, FinetuneResult, Normalization
from agmc_onnx.finetune.losses import feature_loss, kept_part, shared_residual_sums, training_loss
from agmc_onnx.finetune.training import (
    ProgressCallback,
    TrainerBase,
    autocast,
    epoch_seed,
    resolve_device,
    train_epochs,
)
from agmc_onnx.torch_exec import OnnxModule

__all__ = ["finetune", "evaluate_module"]



@dataclass(frozen=True, eq=False)
class _Images:
    """A labelled set already on the training device: uint8 N×C×H×W images and int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_arrays(cls, images: np.ndarray, labels: np.ndarray, device: torch.device) -> _Images:
        pixels = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()
        return cls(pixels.to(device), torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device))

    def __len__(self) -> int:
        return len(self.labels)


def _capture(names: frozenset[str], into: dict[str, torch.Tensor]):
    """A ``before_node`` hook of ``OnnxModule.run`` that keeps the named tensors as they appear."""

    def hook(_node_name, _args, values):
        for name in names.difference(into):
            if name in values:
                into[name] = values[name]

    return hook


def _first_output(outputs) -> torch.Tensor:
    return outputs[0] if isinstance(outputs, tuple) else outputs


@torch.no_grad()
def _evaluate(
    module: OnnxModule, data: _Images, normalization: Normalization, batch_size: int, mixed_precision: bool
) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy) in eval mode; NaN for an empty set."""
    if len(data) == 0:
        return math.nan, math.nan
    module.eval()
    device = data.images.device
    loss_sum, correct = 0.0, 0
    for start in range(0, len(data), batch_size):
        x = normalize(data.images[start : start + batch_size], normalization)
        y = data.labels[start : start + batch_size]
        with autocast(device, mixed_precision):
            logits = _first_output(module(x)).float()
        loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
    return loss_sum / len(data), correct / len(data)


def evaluate_module(
    module: OnnxModule,
    images: np.ndarray,
    labels: np.ndarray,
    normalization: Normalization,
    *,
    batch_size: int = 500,
    device: str = "auto",
) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy) of ``module`` on uint8 N×H×W×C ``images``."""
    target = resolve_device(device)
    module.to(target)
    return _evaluate(module, _Images.from_arrays(images, labels, target), normalization, batch_size, True)


def _check_data(images: np.ndarray, labels: np.ndarray, normalization: Normalization, source: str) -> None:
    if images.ndim != 4 or images.dtype != np.uint8:
        raise DataError(f"{source} images must be uint8 N×H×W×C, got {images.dtype} {images.shape}")
    if labels.shape != (len(images),):
        raise DataError(f"{source}: {len(labels)} labels for {len(images)} images")
    if images.shape[3] != len(normalization.mean):
        raise DataError(
            f"{source} images have {images.shape[3]} channels "
            f"but the normalization has {len(normalization.mean)}"
        )


def _split(images, labels, val_images, val_labels, config: FinetuneConfig):
    if val_images is not None:
        return images, labels, val_images, val_labels
    n_val = int(round(len(images) * config.val_fraction))
    if config.val_fraction > 0:
        n_val = min(max(n_val, 1), len(images) - 1)
    order = np.random.default_rng(config.seed).permutation(len(images))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    return images[train_idx], labels[train_idx], images[val_idx], labels[val_idx]


class _Trainer(TrainerBase):
    """Holds one run's module, optimizer and data; ``run_epoch`` trains and validates one epoch."""

    def __init__(
        self, model, teacher, train: _Images, val: _Images, normalization, config, progress, feature_channels=None
    ):
        super().__init__(model, teacher, len(train), train.images.device, config)
        self.train, self.val, self.normalization = train, val, normalization
        self.progress = progress
        use_features = teacher is not None and config.feature_distill_weight > 0
        self.feature_names = shared_residual_sums(model, teacher) if use_features else frozenset()
        self.feature_channels = {
            name: torch.as_tensor(np.asarray(positions), dtype=torch.long, device=self.device)
            for name, positions in (feature_channels or {}).items()
            if name in self.feature_names
        }

    def validate(self) -> tuple[float, float]:
        return _evaluate(
            self.module,
            self.val,
            self.normalization,
            self.config.eval_batch_size,
            self.config.mixed_precision,
        )

    def run_epoch(self, epoch: int) -> EpochRecord:
        started = time.perf_counter()
        config = self.config
        generator = torch.Generator().manual_seed(epoch_seed(config.seed, epoch))
        order = torch.randperm(len(self.train), generator=generator)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        loss_sum, correct, seen = 0.0, 0, 0
        self.module.train()
        with torch.random.fork_rng(devices=devices):  # dropout draws from the global RNG: seed it per epoch
            torch.manual_seed(epoch_seed(config.seed, epoch))
            for step in range(self.steps_per_epoch):
                index = order[step * self.batch_size : (step + 1) * self.batch_size].to(self.device)
                pixels = random_crop_flip(
                    self.train.images[index], config.crop_padding_px, config.horizontal_flip, generator
                )
                loss, batch_correct = self._step(
                    normalize(pixels, self.normalization), self.train.labels[index]
                )
                loss_sum += loss * len(index)
                correct += batch_correct
                seen += len(index)
                if self.progress is not None:
                    self.progress(
                        FinetuneProgress(epoch, config.epochs, step + 1, self.steps_per_epoch, loss)
                    )
        val_loss, val_top1 = self.validate()
        return EpochRecord(
            epoch,
            loss_sum / seen,
            correct / seen,
            val_loss,
            val_top1,
            self.optimizer.param_groups[0]["lr"],
            time.perf_counter() - started,
        )

    def _step(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
        config = self.config
        use_features = bool(self.feature_names)
        student_features: dict[str, torch.Tensor] = {}
        teacher_features: dict[str, torch.Tensor] = {}
        student_hook = _capture(self.feature_names, student_features) if use_features else None
        teacher_hook = _capture(self.feature_names, teacher_features) if use_features else None
        with autocast(self.device, config.mixed_precision):
            logits = _first_output(self.module.run((x,), student_hook)).float()
            teacher_logits = None
            if self.teacher is not None:
                with torch.no_grad():
                    teacher_logits = _first_output(self.teacher.run((x,), teacher_hook)).float()
        loss = training_loss(
            logits,
            labels,
            teacher_logits,
            label_smoothing=config.label_smoothing,
            distill_weight=config.distill_weight,
            temperature=config.distill_temperature,
        )
        if use_features:
            for name, kept in self.feature_channels.items():
                if name in student_features and name in teacher_features:
                    teacher_features[name] = kept_part(student_features[name], teacher_features[name], kept)
            loss = loss + config.feature_distill_weight * feature_loss(student_features, teacher_features)
        self.apply_gradients(loss)
        return loss.item(), int((logits.argmax(dim=1) == labels).sum().item())


def finetune(
    model: onnx.ModelProto,
    images: np.ndarray,
    labels: np.ndarray,
    normalization: Normalization,
    config: FinetuneConfig = FinetuneConfig(),
    *,
    teacher: onnx.ModelProto | None = None,
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    progress: ProgressCallback | None = None,
    feature_channels: Mapping[str, np.ndarray] | None = None,
) -> FinetuneResult:
    """Fine-tune ``model`` on uint8 N×H×W×C ``images``; return the same graph with the best epoch's values.

    With ``teacher`` (e.g. the unpruned model) the loss mixes in distillation, of the logits and of the
    residual sums both graphs share; ``feature_channels`` (``prune.kept_channels``: the teacher's positions
    each pruned tensor kept) lets a residual sum that lost channels be compared on the channels it kept
    (without it, only sums of the same shape are). With ``checkpoint_path`` a checkpoint is written after
    every epoch; ``resume`` continues from it when it exists.
    """
    _check_data(images, labels, normalization, "training")
    if val_images is not None:
        _check_data(val_images, val_labels, normalization, "validation")
    device = resolve_device(config.device)
    train_x, train_y, val_x, val_y = _split(images, labels, val_images, val_labels, config)
    if len(train_x) < 2:
        raise DataError(f"fine-tuning needs at least 2 training images, got {len(train_x)}")
    trainer = _Trainer(
        model,
        teacher,
        _Images.from_arrays(train_x, train_y, device),
        _Images.from_arrays(val_x, val_y, device),
        normalization,
        config,
        progress,
        feature_channels,
    )
    return train_epochs(
        trainer,
        model,
        config,
        fingerprint=run_fingerprint(model, train_y, teacher),
        checkpoint_path=checkpoint_path,
        resume=resume,
        progress=progress,
    )
