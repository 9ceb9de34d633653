"""Fine-tuning of ONNX models through torch; trained values are written back into the same graph."""

from agmc_onnx.finetune.augment import normalize, random_crop_flip
from agmc_onnx.finetune.config import (
    EpochRecord,
    FinetuneConfig,
    FinetuneProgress,
    FinetuneResult,
    Normalization,
)
from agmc_onnx.finetune.loop import evaluate_module, finetune
from agmc_onnx.finetune.losses import training_loss
from agmc_onnx.finetune.training import resolve_device

__all__ = [
    "finetune",
    "evaluate_module",
    "resolve_device",
    "FinetuneConfig",
    "FinetuneResult",
    "FinetuneProgress",
    "EpochRecord",
    "Normalization",
    "training_loss",
    "random_crop_flip",
    "normalize",
]
