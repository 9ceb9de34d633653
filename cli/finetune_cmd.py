"""``agmc-onnx finetune``: train MODEL's numbers through torch, write them back into the same ONNX graph."""

from __future__ import annotations

import math
from pathlib import Path

import click

from agmc_onnx.cli.options import (
    MODEL_FILE,
    Preprocessing,
    data_option,
    model_argument,
    output_option,
    path_option,
    preprocessing_options,
    valued_option,
)
from agmc_onnx.cli.progress import ProgressRenderer
from agmc_onnx.data import load_split, sample_subset
from agmc_onnx.data.feeds import Feeder, model_inputs
from agmc_onnx.errors import DataError
from agmc_onnx.finetune import FinetuneConfig, Normalization, finetune
from agmc_onnx.finetune.distill import distill
from agmc_onnx.io import load_model, save_model

__all__ = ["command"]


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.2f} %"


def _train(model, teacher, paths, dataset, inputs, spec, config, options):
    """(result, what its validation score measures): fine-tuning on labels, or pure distillation without."""
    model_path, teacher_path = paths
    source = Path(dataset.source).name
    if not dataset.labelled:
        if teacher is None:
            raise DataError(
                f"{source} has no labels; give --distill ORIGINAL to fine-tune by pure distillation from it"
            )
        click.echo(
            f"distilling {teacher_path.name} into {model_path.name} on {len(dataset)} inputs from {source} (no labels)",
            err=True,
        )
        return distill(model, teacher, Feeder(dataset, inputs, spec), config, **options), "val fidelity"
    click.echo(
        f"fine-tuning {model_path.name} on {dataset.n_images} images from {source}"
        f"{' with distillation from ' + teacher_path.name if teacher_path else ''}",
        err=True,
    )
    normalization = Normalization(spec.mean, spec.std, spec.scale, spec.layout)
    result = finetune(model, dataset.images, dataset.labels, normalization, config, teacher=teacher, **options)
    return result, "val top-1"


@click.command("finetune")
@model_argument()
@data_option("Training data")
@output_option("Where to write the fine-tuned model (atomically).")
@valued_option("--epochs", type=click.IntRange(min=1), default=1)
@valued_option(
    "--distill",
    "teacher_path",
    type=MODEL_FILE,
    help="The original (unpruned) model: distil its softened logits into MODEL (without labels: pure "
    "distillation on all of its outputs).",
)
@valued_option(
    "--distill-weight",
    type=click.FloatRange(0.0, 1.0),
    default=0.5,
    help="Share of the loss taken by the distillation term.",
)
@valued_option("--temperature", type=click.FloatRange(min=0.0, min_open=True), default=4.0)
@valued_option(
    "--feature-distill-weight",
    type=click.FloatRange(min=0.0),
    default=FinetuneConfig.feature_distill_weight,
    help="With --distill and labels: weight of the term that pulls MODEL's residual sums (Add outputs both "
    "graphs share, at the same shape) toward the original's; 0 turns it off.",
)
@valued_option("--batch-size", type=click.IntRange(min=1), default=128)
@valued_option(
    "--lr",
    type=click.FloatRange(min=0.0, min_open=True),
    default=0.01,
    help="Peak SGD learning rate (cosine schedule to 0).",
)
@valued_option("--weight-decay", type=click.FloatRange(min=0.0), default=5e-4)
@valued_option("--label-smoothing", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0)
@valued_option(
    "--val-fraction",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.02,
    help="Share of the training images held out to pick the best epoch.",
)
@valued_option(
    "--limit", type=click.IntRange(min=2), help="Train on a seeded, class-balanced subset of this many images."
)
@valued_option("--seed", type=int, default=0)
@valued_option("--device", type=str, default="auto", help="auto, cpu or cuda[:N].")
@path_option("--checkpoint", "checkpoint_path", help="Per-epoch checkpoint [default: OUTPUT with suffix .ckpt].")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint if it exists.")
@preprocessing_options
def command(
    model_path: Path,
    data_path: Path,
    output: Path,
    teacher_path: Path | None,
    temperature: float,
    limit: int | None,
    checkpoint_path: Path | None,
    resume: bool,
    preprocessing: Preprocessing,
    **training,
) -> None:
    """Fine-tune MODEL on the training split of --data; only the initializers' numbers change.

    Data without labels (images without class folders, or an .npz of arrays keyed by input name) are
    learnt by pure distillation from the --distill model, on all of its outputs.
    """
    config = FinetuneConfig(distill_temperature=temperature, **training)  # the other options keep its names
    model = load_model(model_path)
    teacher = load_model(teacher_path) if teacher_path is not None else None
    inputs = model_inputs(model)
    names = [info.name for info in inputs]
    dataset, spec = preprocessing.spec_for(
        model, lambda spec: load_split(data_path, "train", spec, cache_dir=preprocessing.cache_dir, input_names=names)
    )
    if limit is not None:
        dataset = sample_subset(dataset, limit, seed=config.seed)
    checkpoint = checkpoint_path or output.with_name(output.name + ".ckpt")
    with ProgressRenderer() as progress:
        options = {"checkpoint_path": checkpoint, "resume": resume, "progress": progress}
        result, measure = _train(model, teacher, (model_path, teacher_path), dataset, inputs, spec, config, options)
    save_model(result.model, output)
    start = result.history[0].val_top1
    click.echo(
        f"wrote {output}: best epoch {result.best_epoch}/{config.epochs}, "
        f"{measure} {_percent(result.best_val_top1)} "
        f"(before: {_percent(start)}), {result.seconds:.1f} s; checkpoint {checkpoint}"
    )
