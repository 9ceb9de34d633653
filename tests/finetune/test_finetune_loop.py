"""The fine-tuning loop: learns, selects the best epoch, reports progress, resumes exactly."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch
from finetune_testing import NORMALIZATION, synthetic_images, tiny_classifier

from agmc_onnx.errors import DataError, PreconditionError
from agmc_onnx.finetune import FinetuneConfig, finetune, training_loss
from agmc_onnx.finetune.training import optimizer_for
from agmc_onnx.torch_exec import InitializerRole, OnnxModule

CONFIG = FinetuneConfig(epochs=3, batch_size=16, lr=0.1, val_fraction=0.25, seed=3)


def test_finetune_learns_and_keeps_the_graph():
    model = tiny_classifier()
    images, labels = synthetic_images(160)
    events = []
    result = finetune(model, images, labels, NORMALIZATION, CONFIG, progress=events.append)
    assert [r.epoch for r in result.history] == [0, 1, 2, 3]
    assert result.best_val_top1 == max(r.val_top1 for r in result.history)
    assert result.best_val_top1 > result.history[0].val_top1 + 0.2
    assert result.best_epoch >= 1 and result.improved
    assert list(result.model.graph.node) == list(model.graph.node)
    assert [i.name for i in result.model.graph.initializer] == [i.name for i in model.graph.initializer]
    changed = {a.name for a, b in zip(result.model.graph.initializer, model.graph.initializer) if a != b}
    assert {"conv.weight", "bn.running_mean", "bn.running_var", "fc.bias"} <= changed
    # 120 training images in batches of 16: 7 full batches per epoch, then one epoch event.
    batch_events = [e for e in events if e.record is None]
    assert len(batch_events) == 3 * 7 and all(e.batches == 7 for e in batch_events)
    assert [e.record.epoch for e in events if e.record is not None] == [1, 2, 3]


def _without_time(history):
    # repr, because the starting point's train fields are NaN and NaN != NaN.
    return [repr(dataclasses.replace(r, seconds=0.0)) for r in history]


class _Interrupt(Exception):
    pass


def _stop_after_epoch_one(event):
    if event.record is not None and event.record.epoch == 1:
        raise _Interrupt


def test_resumed_run_ends_exactly_where_an_uninterrupted_run_ends(tmp_path):
    model = tiny_classifier(dropout=True)
    images, labels = synthetic_images(96, seed=1)
    run = functools.partial(finetune, model, images, labels, NORMALIZATION, CONFIG, teacher=tiny_classifier(seed=5))
    straight = run(checkpoint_path=tmp_path / "straight.ckpt")
    checkpoint = tmp_path / "interrupted.ckpt"
    with pytest.raises(_Interrupt):
        run(checkpoint_path=checkpoint, progress=_stop_after_epoch_one)
    assert checkpoint.exists()
    resumed = run(checkpoint_path=checkpoint, resume=True)
    assert resumed.model.SerializeToString() == straight.model.SerializeToString()
    assert _without_time(resumed.history) == _without_time(straight.history)
    assert resumed.best_epoch == straight.best_epoch


def test_resume_with_other_settings_is_refused(tmp_path):
    model = tiny_classifier()
    images, labels = synthetic_images(64)
    config = dataclasses.replace(CONFIG, epochs=1)
    finetune(model, images, labels, NORMALIZATION, config, checkpoint_path=tmp_path / "run.ckpt")
    with pytest.raises(PreconditionError, match="lr: 0.1 -> 0.05"):
        finetune(
            model,
            images,
            labels,
            NORMALIZATION,
            dataclasses.replace(config, lr=0.05),
            checkpoint_path=tmp_path / "run.ckpt",
            resume=True,
        )


def test_a_checkpoint_from_before_a_setting_existed_is_refused(tmp_path):
    model = tiny_classifier()
    images, labels = synthetic_images(64)
    config = dataclasses.replace(CONFIG, epochs=1)
    path = tmp_path / "run.ckpt"
    finetune(model, images, labels, NORMALIZATION, config, checkpoint_path=path)
    payload = torch.load(path, weights_only=True)
    del payload["config"]["feature_distill_weight"]  # as written by a version without the setting
    torch.save(payload, path)
    with pytest.raises(PreconditionError, match="feature_distill_weight: not recorded -> "):
        finetune(model, images, labels, NORMALIZATION, config, checkpoint_path=path, resume=True)


def test_weight_decay_applies_to_weights_only():
    module = OnnxModule(tiny_classifier())
    optimizer = optimizer_for(module, FinetuneConfig(weight_decay=1e-3))
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    roles = module.initializer_roles
    for name, param in module.onnx_parameters().items():
        assert (id(param) in decayed) == (roles[name] is InitializerRole.WEIGHT), name
    assert len(decayed) == 2  # conv.weight and fc.weight


def test_distillation_term_vanishes_when_student_equals_teacher():
    logits = torch.randn(5, 3)
    labels = torch.tensor([0, 1, 2, 0, 1])
    plain = training_loss(logits, labels)
    mixed = training_loss(logits, labels, logits.clone(), distill_weight=0.25, temperature=3.0)
    torch.testing.assert_close(mixed, 0.75 * plain)
    assert training_loss(logits, labels, torch.randn(5, 3), distill_weight=0.25) > 0.75 * plain


def test_bad_inputs_are_refused_with_a_reason():
    model = tiny_classifier()
    images, labels = synthetic_images(16)
    with pytest.raises(DataError, match="uint8"):
        finetune(model, images.astype(np.float32), labels, NORMALIZATION, CONFIG)
    with pytest.raises(DataError, match="labels"):
        finetune(model, images, labels[:-1], NORMALIZATION, CONFIG)
    with pytest.raises(PreconditionError, match="epochs must be at least 1"):
        FinetuneConfig(epochs=0)
