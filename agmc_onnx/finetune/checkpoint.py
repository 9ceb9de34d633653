"""Per-epoch checkpoints: module, optimizer, scheduler, epoch and best-so-far, written atomically.

A checkpoint records the configuration and a fingerprint of the model and data it was made for; resuming
with anything else is refused instead of silently training a different run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

from agmc_onnx.errors import PreconditionError
from agmc_onnx.finetune.config import EpochRecord, FinetuneConfig

__all__ = ["TrainingState", "save_checkpoint", "load_checkpoint", "run_fingerprint"]

log = logging.getLogger(__name__)

_FORMAT_VERSION = 1
# Settings that may change between an interrupted run and its resumption without changing the result.
_RESUMABLE_CHANGES = frozenset({"device", "eval_batch_size"})


@dataclasses.dataclass(frozen=True, eq=False)
class TrainingState:
    """Everything needed to continue after ``epoch`` completed epochs."""

    epoch: int
    module: dict
    optimizer: dict
    scheduler: dict
    best_epoch: int
    best_val_top1: float
    best_module: dict
    history: tuple[EpochRecord, ...]
    seconds: float


def run_fingerprint(model: onnx.ModelProto, labels: np.ndarray, teacher: onnx.ModelProto | None) -> str:
    """A short hash of the graph, its initializers, the training labels and the teacher's graph."""
    digest = hashlib.sha256()
    for proto in (model, teacher):
        if proto is None:
            continue
        for node in proto.graph.node:
            digest.update(f"{node.op_type}|{','.join(node.input)}|{','.join(node.output)}\n".encode())
        for init in proto.graph.initializer:
            digest.update(f"{init.name}|{list(init.dims)}|{init.data_type}\n".encode())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()[:16]


def save_checkpoint(path: Path, state: TrainingState, config: FinetuneConfig, fingerprint: str) -> None:
    payload = {
        "format": _FORMAT_VERSION,
        "fingerprint": fingerprint,
        "config": dataclasses.asdict(config),
        "epoch": state.epoch,
        "module": state.module,
        "optimizer": state.optimizer,
        "scheduler": state.scheduler,
        "best_epoch": state.best_epoch,
        "best_val_top1": state.best_val_top1,
        "best_module": state.best_module,
        "history": [dataclasses.asdict(record) for record in state.history],
        "seconds": state.seconds,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp_name)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    log.info("checkpoint after epoch %d written to %s", state.epoch, path)


def load_checkpoint(path: Path, config: FinetuneConfig, fingerprint: str) -> TrainingState:
    """Read a checkpoint written for the same model, data and configuration."""
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise PreconditionError(f"cannot read checkpoint {path}: {exc}") from None
    if payload.get("format") != _FORMAT_VERSION:
        raise PreconditionError(
            f"checkpoint {path} has format {payload.get('format')}, expected {_FORMAT_VERSION}"
        )
    if payload["fingerprint"] != fingerprint:
        raise PreconditionError(
            f"checkpoint {path} was written for another model, teacher or training set; "
            "delete it or point --checkpoint elsewhere to start afresh"
        )
    current, saved = dataclasses.asdict(config), payload["config"]
    # a setting the checkpoint does not name (written before it existed) counts as changed too
    changed = sorted(
        k for k in saved.keys() | current.keys() if current.get(k) != saved.get(k) and k not in _RESUMABLE_CHANGES
    )
    if changed:
        details = ", ".join(f"{k}: {saved.get(k, 'not recorded')} -> {current.get(k)}" for k in changed)
        raise PreconditionError(f"checkpoint {path} was written with other settings ({details})")
    return TrainingState(
        epoch=int(payload["epoch"]),
        module=payload["module"],
        optimizer=payload["optimizer"],
        scheduler=payload["scheduler"],
        best_epoch=int(payload["best_epoch"]),
        best_val_top1=float(payload["best_val_top1"]),
        best_module=payload["best_module"],
        history=tuple(EpochRecord(**record) for record in payload["history"]),
        seconds=float(payload["seconds"]),
    )
