"""Feature distillation: the student's residual sums are pulled toward the teacher's during fine-tuning."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from finetune_testing import NORMALIZATION, synthetic_images, tiny_classifier, tiny_residual_classifier

from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import PreconditionError
from agmc_onnx.finetune import FinetuneConfig, finetune
from agmc_onnx.finetune.augment import normalize
from agmc_onnx.finetune.losses import feature_loss, kept_part, shared_residual_sums
from agmc_onnx.plan import uniform_plan
from agmc_onnx.prune import kept_channels, prune_model
from agmc_onnx.torch_exec import OnnxModule

CONFIG = FinetuneConfig(epochs=3, batch_size=16, lr=0.01, val_fraction=0.0, seed=0, device="cpu")


def _residual_sum(model, images) -> torch.Tensor:
    x = normalize(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), NORMALIZATION)
    seen = {}
    OnnxModule(model).eval().run(
        (x,), lambda _name, _args, values: seen.update({"s": values.get("block.sum", seen.get("s"))})
    )
    return seen["s"]


def test_the_feature_term_is_zero_for_equal_tensors_and_skips_other_shapes():
    t = {"a": torch.randn(2, 4, 3, 3), "b": torch.randn(2, 8, 3, 3)}
    assert feature_loss(dict(t), t).item() == 0.0
    pruned = {"a": t["a"] + 0.1, "b": torch.randn(2, 5, 3, 3)}  # "b" lost channels: not comparable
    expected = ((0.1**2) / (t["a"] ** 2).mean()).item()
    assert feature_loss(pruned, t).item() == pytest.approx(expected, rel=1e-4)
    assert feature_loss({"c": torch.ones(1)}, t).item() == 0.0


def test_shared_residual_sums_are_the_add_outputs_of_both_graphs():
    teacher = tiny_residual_classifier()
    assert shared_residual_sums(tiny_residual_classifier(block_noise=0.1), teacher) == {"block.sum"}
    assert shared_residual_sums(tiny_classifier(), teacher) == frozenset()


def test_feature_distillation_pulls_the_residual_sums_toward_the_teachers():
    teacher = tiny_residual_classifier(seed=0)
    student = tiny_residual_classifier(seed=0, block_noise=0.05)
    images, labels = synthetic_images(160)
    probe, _ = synthetic_images(64, seed=1)
    target = _residual_sum(teacher, probe)

    def gap(model) -> float:
        return (((_residual_sum(model, probe) - target) ** 2).mean() / (target**2).mean()).item()

    runs = {
        weight: finetune(
            student,
            images,
            labels,
            NORMALIZATION,
            dataclasses.replace(CONFIG, feature_distill_weight=weight),
            teacher=teacher,
        ).model
        for weight in (0.0, 5.0)
    }
    start = gap(student)
    assert gap(runs[5.0]) < 0.5 * start
    assert gap(runs[5.0]) < 0.5 * gap(runs[0.0])


def test_a_negative_feature_weight_is_refused():
    with pytest.raises(PreconditionError, match="feature_distill_weight"):
        FinetuneConfig(feature_distill_weight=-1.0)


def test_the_kept_part_of_a_teacher_tensor_follows_the_axis_that_lost_channels():
    kept = torch.tensor([1, 4, 6])
    teacher = torch.randn(2, 8, 3, 3)
    torch.testing.assert_close(kept_part(torch.zeros(2, 3, 3, 3), teacher, kept), teacher[:, kept])
    tokens = torch.randn(2, 5, 8)  # channels last (a transformer's hidden size)
    torch.testing.assert_close(kept_part(torch.zeros(2, 5, 3), tokens, kept), tokens[:, :, kept])
    assert kept_part(torch.zeros(2, 4, 3, 3), teacher, kept) is teacher  # no axis of three kept channels


def test_a_residual_sum_that_lost_channels_is_distilled_on_the_ones_it_kept():
    teacher = tiny_residual_classifier(seed=0)
    analysis = analyze_model(teacher)
    plan = uniform_plan(analysis.groups, 0.5)
    student = prune_model(teacher, plan, analysis=analysis).model
    kept = kept_channels(analysis, plan)
    assert "block.sum" in kept and len(kept["block.sum"]) == 4  # the residual stream lost half its channels
    images, labels = synthetic_images(160)
    probe, _ = synthetic_images(64, seed=1)
    target = _residual_sum(teacher, probe)[:, torch.as_tensor(kept["block.sum"])]

    def gap(model) -> float:
        return (((_residual_sum(model, probe) - target) ** 2).mean() / (target**2).mean()).item()

    config = dataclasses.replace(CONFIG, feature_distill_weight=5.0)
    on_kept = finetune(student, images, labels, NORMALIZATION, config, teacher=teacher, feature_channels=kept)
    shapes_only = finetune(student, images, labels, NORMALIZATION, config, teacher=teacher)
    assert gap(on_kept.model) < 0.8 * gap(shapes_only.model)  # measured: 0.36 against 0.58
