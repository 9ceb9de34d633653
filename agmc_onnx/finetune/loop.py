"""``finetune``: train an ONNX model's numbers through torch and write them back into the same graph.

Data arrives as uint8 N×H×W×C arrays with int64 labels plus a ``Normalization``; a seeded share of it is
held out for validation, evaluated after every epoch, and the best epoch's values are written back
(epoch 0, the starting point, competes too). Randomness is seeded per epoch, so a run resumed from a
checkpoint ends exactly where an uninterrupted run ends.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from agmc_onnx.errors import DataError, TargetUnavailableError
from agmc_onnx.finetune.augment import normalize, random_crop_flip
from agmc_onnx.finetune.checkpoint import TrainingState, load_checkpoint, run_fingerprint, save_checkpoint
from agmc_onnx.finetune.config import (
    EpochRecord,
    FinetuneConfig,
    FinetuneProgress,
    FinetuneResult,
    Normalization,
)
from agmc_onnx.finetune.losses import training_loss
from agmc_onnx.progress import ProgressFn, report
from agmc_onnx.torch_exec import InitializerRole, OnnxModule, write_back

__all__ = ["finetune", "evaluate_module", "resolve_device"]

log = logging.getLogger(__name__)



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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TargetUnavailableError(
            f"device {name} was requested but torch sees no CUDA GPU; use --device cpu"
        )
    return device


def _first_output(outputs) -> torch.Tensor:
    return outputs[0] if isinstance(outputs, tuple) else outputs


def _autocast(device: torch.device, enabled: bool):
    # bf16 autocast only on CUDA: CPU bf16 convolutions are slower than fp32 on most CPUs.
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda"
    )


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
        with _autocast(device, mixed_precision):
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


def _optimizer(module: OnnxModule, config: FinetuneConfig) -> torch.optim.Optimizer:
    """SGD; weight decay only on conv/linear weights, never on normalisation parameters or biases."""
    roles = module.initializer_roles
    decay, no_decay = [], []
    for name, param in module.onnx_parameters().items():
        (decay if roles[name] is InitializerRole.WEIGHT else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.SGD(
        [g for g in groups if g["params"]],
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
    )


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def _better(record: EpochRecord, best: EpochRecord) -> bool:
    """Higher validation top-1 wins, lower validation loss breaks ties; without validation, the last epoch."""
    if math.isnan(record.val_top1) or math.isnan(best.val_top1):
        return True
    return (record.val_top1, -record.val_loss) > (best.val_top1, -best.val_loss)


def _cpu_state(module: torch.nn.Module) -> dict:
    return {key: value.detach().to("cpu", copy=True) for key, value in module.state_dict().items()}


class _Trainer:
    """Holds one run's module, optimizer and data; ``run_epoch`` trains and validates one epoch."""

    def __init__(self, model, teacher, train: _Images, val: _Images, normalization, config, progress):
        self.device = train.images.device
        self.module = OnnxModule(model).to(self.device)
        self.teacher = None
        if teacher is not None:
            self.teacher = OnnxModule(teacher).to(self.device).eval().requires_grad_(False)
        self.train, self.val, self.normalization, self.config = train, val, normalization, config
        self.progress = progress
        self.batch_size = min(config.batch_size, len(train))
        # Full batches only: a trailing batch of one sample would break BatchNormalization in training.
        self.steps_per_epoch = len(train) // self.batch_size
        self.optimizer = _optimizer(self.module, config)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=config.epochs * self.steps_per_epoch
        )

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
        generator = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch))
        order = torch.randperm(len(self.train), generator=generator)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        loss_sum, correct, seen = 0.0, 0, 0
        self.module.train()
        with torch.random.fork_rng(devices=devices):  # dropout draws from the global RNG: seed it per epoch
            torch.manual_seed(_epoch_seed(config.seed, epoch))
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
                report(self.progress, FinetuneProgress(epoch, config.epochs, step + 1, self.steps_per_epoch, loss))
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
        with _autocast(self.device, config.mixed_precision):
            logits = _first_output(self.module(x)).float()
            teacher_logits = None
            if self.teacher is not None:
                with torch.no_grad():
                    teacher_logits = _first_output(self.teacher(x)).float()
        loss = training_loss(
            logits,
            labels,
            teacher_logits,
            label_smoothing=config.label_smoothing,
            distill_weight=config.distill_weight,
            temperature=config.distill_temperature,
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.item(), int((logits.argmax(dim=1) == labels).sum().item())

    def state(self, epoch, best_epoch, best_val_top1, best_module, history, seconds) -> TrainingState:
        return TrainingState(
            epoch,
            _cpu_state(self.module),
            copy.deepcopy(self.optimizer.state_dict()),
            self.scheduler.state_dict(),
            best_epoch,
            best_val_top1,
            best_module,
            tuple(history),
            seconds,
        )

    def restore(self, state: TrainingState) -> None:
        self.module.load_state_dict(state.module)
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)


@dataclass
class _Progress:
    """Where a run stands: the epochs so far and the best one (epoch 0, the starting point, competes)."""

    first_epoch: int
    history: list
    best_epoch: int
    best_val_top1: float
    best_module: dict
    previous_seconds: float = 0.0

    @classmethod
    def start(cls, trainer: _Trainer, checkpoint: Path | None, config: FinetuneConfig, fingerprint) -> _Progress:
        """From the checkpoint when there is one (resume), else from the model as it is."""
        if checkpoint is not None and checkpoint.exists():
            state = load_checkpoint(checkpoint, config, fingerprint)
            trainer.restore(state)
            log.info("resuming after epoch %d from %s", state.epoch, checkpoint)
            return cls(
                state.epoch + 1,
                list(state.history),
                state.best_epoch,
                state.best_val_top1,
                state.best_module,
                state.seconds,
            )
        val_loss, val_top1 = trainer.validate()
        start = EpochRecord(0, math.nan, math.nan, val_loss, val_top1, config.lr, 0.0)
        return cls(1, [start], 0, val_top1, _cpu_state(trainer.module))

    def add(self, record: EpochRecord, module: torch.nn.Module) -> None:
        self.history.append(record)
        if _better(record, self.history[self.best_epoch]):
            self.best_epoch, self.best_val_top1, self.best_module = record.epoch, record.val_top1, _cpu_state(module)


def _trainer(model, images, labels, normalization, config, teacher, val_images, val_labels, progress):
    """The trainer of a run and its training labels (part of the run's fingerprint)."""
    _check_data(images, labels, normalization, "training")
    if val_images is not None:
        _check_data(val_images, val_labels, normalization, "validation")
    device = resolve_device(config.device)
    train_x, train_y, val_x, val_y = _split(images, labels, val_images, val_labels, config)
    if len(train_x) < 2:
        raise DataError(f"fine-tuning needs at least 2 training images, got {len(train_x)}")
    train, val = _Images.from_arrays(train_x, train_y, device), _Images.from_arrays(val_x, val_y, device)
    return _Trainer(model, teacher, train, val, normalization, config, progress), train_y


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
    progress: ProgressFn | None = None,
) -> FinetuneResult:
    """Fine-tune ``model`` on uint8 N×H×W×C ``images``; return the same graph with the best epoch's values.

    With ``teacher`` (e.g. the unpruned model) the loss mixes in distillation. With ``checkpoint_path`` a
    checkpoint is written after every epoch; ``resume`` continues from it when it exists. ``progress``
    receives a ``FinetuneProgress`` after every batch and every epoch.
    """
    trainer, train_labels = _trainer(
        model, images, labels, normalization, config, teacher, val_images, val_labels, progress
    )
    fingerprint = run_fingerprint(model, train_labels, teacher)
    checkpoint = Path(checkpoint_path) if checkpoint_path is not None else None
    started = time.perf_counter()
    run = _Progress.start(trainer, checkpoint if resume else None, config, fingerprint)
    for epoch in range(run.first_epoch, config.epochs + 1):
        record = trainer.run_epoch(epoch)
        run.add(record, trainer.module)
        if checkpoint is not None:
            elapsed = run.previous_seconds + time.perf_counter() - started
            state = trainer.state(epoch, run.best_epoch, run.best_val_top1, run.best_module, run.history, elapsed)
            save_checkpoint(checkpoint, state, config, fingerprint)
        batches = trainer.steps_per_epoch
        report(progress, FinetuneProgress(epoch, config.epochs, batches, batches, record.train_loss, record))
    trainer.module.load_state_dict(run.best_module)
    trained = write_back(model, trainer.module.to("cpu"))
    seconds = run.previous_seconds + time.perf_counter() - started
    return FinetuneResult(trained, tuple(run.history), run.best_epoch, run.best_val_top1, seconds)
