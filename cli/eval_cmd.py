"""``agmc-onnx eval``: top-1/top-5 accuracy of an ONNX classifier on a dataset, through onnxruntime."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from agmc_onnx.cli.options import (
    MODEL_FILE,
    Preprocessing,
    data_option,
    json_option,
    model_argument,
    preprocessing_options,
    valued_option,
)
from agmc_onnx.cli.progress import ProgressRenderer
from agmc_onnx.data import load_split, sample_subset
from agmc_onnx.data.feeds import Feeder, model_inputs
from agmc_onnx.data.splits import SPLIT_NAMES
from agmc_onnx.errors import DataError
from agmc_onnx.evaluate import evaluate_accuracy
from agmc_onnx.fidelity import evaluate_fidelity, run_outputs
from agmc_onnx.io import load_model

__all__ = ["command"]


@click.command("eval")
@model_argument()
@data_option("Dataset")
@click.option("--split", type=click.Choice(SPLIT_NAMES), default="test", show_default=True)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Evaluate a seeded, class-balanced subset of this many images.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@preprocessing_options
@valued_option(
    "--reference",
    "reference_path",
    type=MODEL_FILE,
    help="The original model: measure MODEL's fidelity to its outputs instead (needs no labels).",
)
@click.option("--no-cache", is_flag=True, help="Decode the images again and do not write the cache.")
@json_option()
def command(
    model_path: Path,
    data_path: Path,
    split: str,
    limit: int | None,
    batch_size: int,
    preprocessing: Preprocessing,
    reference_path: Path | None,
    no_cache: bool,
    as_json: bool,
) -> None:
    """Accuracy of MODEL on a dataset split, through onnxruntime.

    With --reference, MODEL's fidelity to that model's outputs instead (top-1 agreement for class scores,
    else 1 − relative L2 per output), without labels.
    """
    model = load_model(model_path)
    reference = load_model(reference_path) if reference_path is not None else None  # models before data
    inputs = model_inputs(model)
    names = [info.name for info in inputs]
    dataset, spec = preprocessing.spec_for(
        model,
        lambda spec: load_split(
            data_path, split, spec, cache_dir=preprocessing.cache_dir, use_cache=not no_cache, input_names=names
        ),
    )
    if limit is not None:
        dataset = sample_subset(dataset, limit)
    if reference is not None:
        _echo_fidelity(model, reference, Feeder(dataset, inputs, spec), split, as_json)
        return
    if not dataset.labelled:
        raise DataError(
            f"{dataset.source} has no labels; give --reference ORIGINAL to measure fidelity to the original instead"
        )
    with ProgressRenderer() as progress:
        result = evaluate_accuracy(model, dataset, spec, batch_size=batch_size, progress=progress)
    if as_json:
        payload = {
            "model": str(model_path),
            "data": dataset.source,
            "split": split,
            **dataclasses.asdict(result),
        }
        click.echo(json.dumps(payload, indent=2))
        return
    n_top1 = round(result.top1 * result.n_images)
    click.echo(
        f"{model_path.name} on {Path(dataset.source).name} ({split}, {result.n_images} images): "
        f"top-1 {100 * result.top1:.2f} % ({n_top1}/{result.n_images}), top-5 {100 * result.top5:.2f} %, "
        f"{result.seconds:.1f} s"
    )


def _echo_fidelity(model, reference_model, feeder, split: str, as_json: bool) -> None:
    result = evaluate_fidelity(model, feeder, run_outputs(reference_model, feeder))
    if as_json:
        click.echo(json.dumps({"split": split, **dataclasses.asdict(result)}, indent=2))
        return
    click.echo(
        f"fidelity to the reference ({result.metric}) on {result.n_samples} inputs ({split}): "
        f"{100 * result.score:.2f} %, {result.seconds:.1f} s"
    )
