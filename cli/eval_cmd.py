"""``agmc-onnx eval``: top-1/top-5 accuracy of an ONNX classifier on a dataset, through onnxruntime."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from agmc_onnx.cli.options import Preprocessing, data_option, model_argument, preprocessing_options
from agmc_onnx.cli.progress import ProgressRenderer
from agmc_onnx.data import load_split, sample_subset
from agmc_onnx.data.splits import SPLIT_NAMES
from agmc_onnx.evaluate import evaluate_accuracy
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
@click.option("--no-cache", is_flag=True, help="Decode the images again and do not write the cache.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(
    model_path: Path,
    data_path: Path,
    split: str,
    limit: int | None,
    batch_size: int,
    preprocessing: Preprocessing,
    no_cache: bool,
    as_json: bool,
) -> None:
    """Accuracy of MODEL on a dataset split, through onnxruntime."""
    model = load_model(model_path)
    spec = preprocessing.spec(model)
    dataset = load_split(data_path, split, spec, cache_dir=preprocessing.cache_dir, use_cache=not no_cache)
    if limit is not None:
        dataset = sample_subset(dataset, limit)
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
