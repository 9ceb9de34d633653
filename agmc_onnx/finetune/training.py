"""What every fine-tuning run shares: device choice, optimizer, seeded epochs, checkpointed epoch loop.

``TrainerBase`` holds the student (and teacher) modules, the optimizer and the per-step cosine schedule;
a trainer adds ``validate`` and ``run_epoch``. ``train_epochs`` runs any such trainer: resumable, keeping
the best epoch by validation score, writing the values back into the ONNX graph.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import onnx
import torch

from agmc_onnx.errors import TargetUnavailableError
from agmc_onnx.finetune.checkpoint import TrainingState, load_checkpoint, save_checkpoint
from agmc_onnx.finetune.config import EpochRecord, FinetuneConfig, FinetuneProgress, FinetuneResult
from agmc_onnx.torch_exec import InitializerRole, OnnxModule, write_back

__all__ = [
    "TrainerBase",
    "train_epochs",
    "resolve_device",
    "autocast",
    "optimizer_for",
    "epoch_seed",
    "cpu_state",
    "ProgressCallback",
]

log = logging.getLogger(__name__)

ProgressCallback = Callable[[FinetuneProgress], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TargetUnavailableError(
            f"device {name} was requested but torch sees no CUDA GPU; use --device cpu"
        )
    return device


def autocast(device: torch.device, enabled: bool):
    # bf16 autocast only on CUDA: CPU bf16 convolutions are slower than fp32 on most CPUs.
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda"
    )


def optimizer_for(module: OnnxModule, config: FinetuneConfig) -> torch.optim.Optimizer:
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


def lr_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float):
    """Per-step cosine decay to 0; with a warm-up, a linear rise from lr/warm-up steps to lr first."""
    warmup = min(round(warmup_fraction * total_steps), total_steps - 1)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps - warmup)
    if warmup <= 0:
        return cosine
    rise = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [rise, cosine], milestones=[warmup])


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def _better(record: EpochRecord, best: EpochRecord) -> bool:
    """Higher validation top-1 wins, lower validation loss breaks ties; without validation, the last epoch."""
    if math.isnan(record.val_top1) or math.isnan(best.val_top1):
        return True
    return (record.val_top1, -record.val_loss) > (best.val_top1, -best.val_loss)


def cpu_state(module: torch.nn.Module) -> dict:
    return {key: value.detach().to("cpu", copy=True) for key, value in module.state_dict().items()}


class TrainerBase:
    """The student module (and frozen teacher), SGD and the per-step cosine schedule of one run."""

    def __init__(self, model, teacher, n_train: int, device: torch.device, config: FinetuneConfig) -> None:
        self.device, self.config = device, config
        self.module = OnnxModule(model).to(device)
        self.teacher = None
        if teacher is not None:
            self.teacher = OnnxModule(teacher).to(device).eval().requires_grad_(False)
        self.batch_size = min(config.batch_size, n_train)
        # Full batches only: a trailing batch of one sample would break BatchNormalization in training.
        self.steps_per_epoch = n_train // self.batch_size
        self.optimizer = optimizer_for(self.module, config)
        self.scheduler = lr_schedule(self.optimizer, config.epochs * self.steps_per_epoch, config.warmup_fraction)

    def apply_gradients(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()

    def state(self, epoch, best_epoch, best_val_top1, best_module, history, seconds) -> TrainingState:
        return TrainingState(
            epoch,
            cpu_state(self.module),
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


def train_epochs(
    trainer,
    model: onnx.ModelProto,
    config: FinetuneConfig,
    *,
    fingerprint: str,
    checkpoint_path: str | Path | None,
    resume: bool,
    progress: ProgressCallback | None,
) -> FinetuneResult:
    """Run ``trainer``'s epochs (resuming from its checkpoint), keep the best, write it back into ``model``.

    ``trainer`` has ``module``, ``steps_per_epoch``, ``validate() -> (loss, score)``, ``run_epoch(epoch)``,
    ``state(...)`` and ``restore(state)``; its validation score picks the best epoch (epoch 0 competes).
    """
    checkpoint = Path(checkpoint_path) if checkpoint_path is not None else None
    started = time.perf_counter()
    if resume and checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint, config, fingerprint)
        trainer.restore(state)
        log.info("resuming after epoch %d from %s", state.epoch, checkpoint)
        first_epoch, history, previous_seconds = state.epoch + 1, list(state.history), state.seconds
        best_epoch, best_val_top1, best_module = state.best_epoch, state.best_val_top1, state.best_module
    else:
        val_loss, val_top1 = trainer.validate()
        history = [EpochRecord(0, math.nan, math.nan, val_loss, val_top1, config.lr, 0.0)]
        first_epoch, previous_seconds = 1, 0.0
        best_epoch, best_val_top1, best_module = 0, val_top1, cpu_state(trainer.module)
    for epoch in range(first_epoch, config.epochs + 1):
        record = trainer.run_epoch(epoch)
        history.append(record)
        if _better(record, history[best_epoch]):
            best_epoch, best_val_top1, best_module = epoch, record.val_top1, cpu_state(trainer.module)
        if checkpoint is not None:
            elapsed = previous_seconds + time.perf_counter() - started
            save_checkpoint(
                checkpoint,
                trainer.state(epoch, best_epoch, best_val_top1, best_module, history, elapsed),
                config,
                fingerprint,
            )
        if progress is not None:
            steps = trainer.steps_per_epoch
            progress(FinetuneProgress(epoch, config.epochs, steps, steps, record.train_loss, record))
    trainer.module.load_state_dict(best_module)
    trained = write_back(model, trainer.module.to("cpu"))
    seconds = previous_seconds + time.perf_counter() - started
    return FinetuneResult(trained, tuple(history), best_epoch, best_val_top1, seconds)
