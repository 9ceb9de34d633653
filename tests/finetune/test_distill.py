"""Label-free fine-tuning: pure distillation from the original on all outputs."""

from __future__ import annotations

import torch
from finetune_testing import synthetic_images, tiny_classifier
from onnx import numpy_helper

from agmc_onnx.data import PreprocessSpec
from agmc_onnx.data.dataset import ImageDataset
from agmc_onnx.data.feeds import Feeder, model_inputs
from agmc_onnx.fidelity import evaluate_fidelity, run_outputs
from agmc_onnx.finetune import FinetuneConfig
from agmc_onnx.finetune.distill import distill
from agmc_onnx.finetune.losses import distillation_loss


def test_distillation_loss_is_zero_on_agreement_and_counts_every_float_output() -> None:
    logits = torch.randn(4, 3)
    assert distillation_loss((logits,), (logits,)).item() < 1e-6
    a, b = torch.randn(4, 5), torch.randn(4, 2, 2)
    two = distillation_loss((a, b * 2), (a, b))
    assert abs(two.item() - 0.5) < 1e-4  # relative squared error 1 on the second output, averaged over two


def test_distillation_without_labels_moves_the_student_towards_the_teacher() -> None:
    teacher, student = tiny_classifier(seed=0), tiny_classifier(seed=0)
    for init in student.graph.initializer:
        if init.name == "fc.weight":  # negated head: the student disagrees with the teacher everywhere
            init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    spec = PreprocessSpec(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), size=(8, 8))
    data = Feeder(ImageDataset.unlabelled(synthetic_images(256, seed=0)[0]), model_inputs(teacher), spec)
    held_out = Feeder(ImageDataset.unlabelled(synthetic_images(128, seed=1)[0]), model_inputs(teacher), spec)
    reference = run_outputs(teacher, held_out)
    before = evaluate_fidelity(student, held_out, reference).score
    config = FinetuneConfig(epochs=3, batch_size=32, lr=0.1, device="cpu", val_fraction=0.25, crop_padding_px=0)
    result = distill(student, teacher, data, config)
    assert evaluate_fidelity(result.model, held_out, reference).score > before + 0.4
    assert result.best_epoch > 0 and result.history[-1].train_loss < result.history[1].train_loss
