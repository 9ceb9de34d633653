"""Label-free fine-tuning: pure distillation from the original model, on all of its outputs.

No labels are read. Each batch goes through the original (teacher) and the pruned model (student); the loss
is ``losses.distillation_loss`` over every float output. Images are augmented (random crop and flip) before
both see them, which is label-free too: the teacher is asked about the same augmented input. Validation is
the fidelity to the teacher on held-out inputs (``agmc_onnx.fidelity``); the best epoch is written back.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from agmc_onnx.data.dataset import ImageDataset
from agmc_onnx.data.feeds import Feeder
from agmc_onnx.data.preprocessing import PreprocessSpec
from agmc_onnx.errors import DataError
from agmc_onnx.fidelity import ReferenceOutputs, compare_outputs
from agmc_onnx.finetune.augment import normalize, random_crop_flip
from agmc_onnx.finetune.checkpoint import run_fingerprint
from agmc_onnx.finetune.config import EpochRecord, FinetuneConfig, FinetuneProgress, FinetuneResult, Normalization
from agmc_onnx.finetune.losses import distillation_loss
from agmc_onnx.finetune.training import (
    ProgressCallback,
    TrainerBase,
    autocast,
    epoch_seed,
    resolve_device,
    train_epochs,
)

__all__ = ["distill"]


@dataclass(frozen=True, eq=False)
class _Inputs:
    """Samples on the device: uint8 N×C×H×W images with their ``spec``, or one tensor per model input."""

    tensors: tuple[torch.Tensor, ...]
    spec: PreprocessSpec | None

    @classmethod
    def from_feeder(cls, feeder: Feeder, device: torch.device) -> _Inputs:
        dataset = feeder.dataset
        if isinstance(dataset, ImageDataset):
            pixels = torch.from_numpy(np.ascontiguousarray(dataset.images)).permute(0, 3, 1, 2).contiguous()
            return cls((pixels.to(device),), feeder.spec)
        arrays = feeder.feeds(slice(None))
        return cls(tuple(torch.from_numpy(arrays[info.name]).to(device) for info in feeder.inputs), None)

    def __len__(self) -> int:
        return len(self.tensors[0])

    def batch(self, index, augment: tuple[int, bool, torch.Generator] | None = None) -> tuple[torch.Tensor, ...]:
        """The model inputs of rows ``index``; images are augmented when ``augment`` (padding, flip, rng)."""
        if self.spec is None:
            return tuple(tensor[index] for tensor in self.tensors)
        pixels = self.tensors[0][index]
        if augment is not None:
            pixels = random_crop_flip(pixels, *augment)
        spec = self.spec
        return (normalize(pixels, Normalization(tuple(spec.mean), tuple(spec.std), spec.scale, spec.layout)),)


def _as_tuple(outputs) -> tuple[torch.Tensor, ...]:
    return outputs if isinstance(outputs, tuple) else (outputs,)


class _Distiller(TrainerBase):
    """Trains the student towards the teacher's outputs; validates by fidelity to the teacher."""

    def __init__(self, model, teacher, train: _Inputs, val: _Inputs, config: FinetuneConfig, progress):
        super().__init__(model, teacher, len(train), train.tensors[0].device, config)
        self.train, self.val, self.progress = train, val, progress
        self.names = tuple(self.module.output_names)
        self.val_reference = ReferenceOutputs(self.names, self._outputs(self.teacher, val)) if len(val) else None

    @torch.no_grad()
    def _outputs(self, module, data: _Inputs) -> tuple[np.ndarray, ...]:
        module.eval()
        parts = []
        for start in range(0, len(data), self.config.eval_batch_size):
            with autocast(self.device, self.config.mixed_precision):
                outputs = _as_tuple(module(*data.batch(slice(start, start + self.config.eval_batch_size))))
            parts.append([o.float().cpu().numpy() if o.is_floating_point() else o.cpu().numpy() for o in outputs])
        return tuple(np.concatenate(column) for column in zip(*parts))

    def validate(self) -> tuple[float, float]:
        """(distillation loss, fidelity to the teacher) on the validation inputs; NaN without any.

        The loss breaks ties of the fidelity (top-1 agreement moves in steps of one sample)."""
        if self.val_reference is None:
            return math.nan, math.nan
        student = ReferenceOutputs(self.names, self._outputs(self.module, self.val))
        loss = distillation_loss(
            tuple(torch.from_numpy(v) for v in student.values),
            tuple(torch.from_numpy(v) for v in self.val_reference.values),
            temperature=self.config.distill_temperature,
        ).item()
        return loss, compare_outputs(self.val_reference, student).score

    def run_epoch(self, epoch: int) -> EpochRecord:
        started = time.perf_counter()
        config = self.config
        generator = torch.Generator().manual_seed(epoch_seed(config.seed, epoch))
        order = torch.randperm(len(self.train), generator=generator)
        augment = (config.crop_padding_px, config.horizontal_flip, generator)
        loss_sum = 0.0
        self.module.train()
        with torch.random.fork_rng(devices=[self.device.index or 0] if self.device.type == "cuda" else []):
            torch.manual_seed(epoch_seed(config.seed, epoch))
            for step in range(self.steps_per_epoch):
                index = order[step * self.batch_size : (step + 1) * self.batch_size].to(self.device)
                loss = self._step(self.train.batch(index, augment))
                loss_sum += loss
                if self.progress is not None:
                    self.progress(FinetuneProgress(epoch, config.epochs, step + 1, self.steps_per_epoch, loss))
        val_loss, fidelity = self.validate()
        lr = self.optimizer.param_groups[0]["lr"]
        seconds = time.perf_counter() - started
        return EpochRecord(epoch, loss_sum / self.steps_per_epoch, math.nan, val_loss, fidelity, lr, seconds)

    def _step(self, inputs: tuple[torch.Tensor, ...]) -> float:
        with autocast(self.device, self.config.mixed_precision):
            student = _as_tuple(self.module(*inputs))
            with torch.no_grad():
                teacher = _as_tuple(self.teacher(*inputs))
        loss = distillation_loss(student, teacher, temperature=self.config.distill_temperature)
        self.apply_gradients(loss)
        return loss.item()


def distill(
    model: onnx.ModelProto,
    teacher: onnx.ModelProto,
    data: Feeder,
    config: FinetuneConfig = FinetuneConfig(),
    *,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    progress: ProgressCallback | None = None,
) -> FinetuneResult:
    """Fine-tune ``model`` towards ``teacher`` on the inputs of ``data``; no labels are used.

    ``config.val_fraction`` of the samples (seeded) are held out; ``best_val_top1`` and each record's
    ``val_top1`` hold the fidelity to the teacher there (top-1 agreement or 1 − relative L2).
    """
    device = resolve_device(config.device)
    order = np.random.default_rng(config.seed).permutation(data.n_samples)
    if data.n_samples < 3:
        raise DataError(f"distillation needs at least 3 samples (2 to train on, 1 to validate), got {data.n_samples}")
    n_val = int(round(data.n_samples * config.val_fraction))
    n_val = min(max(n_val, 1) if config.val_fraction > 0 else 0, data.n_samples - 2)
    train = _Inputs.from_feeder(data.select(np.sort(order[n_val:])), device)
    val = _Inputs.from_feeder(data.select(np.sort(order[:n_val])), device)
    trainer = _Distiller(model, teacher, train, val, config, progress)
    return train_epochs(
        trainer,
        model,
        config,
        fingerprint=run_fingerprint(model, np.sort(order[n_val:]), teacher),
        checkpoint_path=checkpoint_path,
        resume=resume,
        progress=progress,
    )
