"""``agmc-onnx quantize``: static INT8 quantization, calibrated on training images, measured on a target."""

from __future__ import annotations

import json
from pathlib import Path

import click

from agmc_onnx.cli.options import (
    Preprocessing,
    data_option,
    json_option,
    model_argument,
    output_option,
    preprocessing_options,
    target_option,
)
from agmc_onnx.io import load_model, model_file_size, save_model
from agmc_onnx.quantize import FORMAT_CHOICES, QuantizeConfig, QuantizeReport, run_quantize

__all__ = ["command", "describe_format"]

_FORMAT_NOTES = {
    "qoperator": "QOperator (integer operators such as QLinearConv: onnxruntime's fast form on CPU; "
    "other runtimes such as OpenVINO do not load it, ask for --format qdq for those)",
    "qdq": "QDQ (float operators between QuantizeLinear/DequantizeLinear: portable to OpenVINO, TensorRT and "
    "other runtimes; on onnxruntime CPU, --format qoperator may be faster)",
}


def describe_format(quant_format: str) -> str:
    return _FORMAT_NOTES[quant_format]


def _render(report: QuantizeReport, model_path: Path, output: Path, size_before: int) -> None:
    quantized = report.quantized
    choice = report.choice.qoperator_vs_qdq
    if choice is not None:
        faster, ratio = ("QDQ", choice.speedup) if choice.speedup > 1 else ("QOperator", 1 / choice.speedup)
        click.echo(f"format auto: {faster} measured {ratio:.2f}× faster than the other on {report.target}")
    click.echo(f"wrote {output}: INT8, {describe_format(quantized.quant_format)}")
    before, after = report.accuracy_before, report.accuracy_after
    if report.fidelity is not None:
        fidelity = report.fidelity
        click.echo(
            f"test fidelity of INT8 to fp32 ({fidelity.metric}, {fidelity.n_samples} unlabelled inputs): "
            f"{100 * fidelity.score:.2f} %"
        )
    else:
        click.echo(
            f"test top-1 ({after.n_images} images): {100 * before.top1:.2f} % -> {100 * after.top1:.2f} % "
            f"({100 * (after.top1 - before.top1):+.2f} points)"
        )
    size_after = output.stat().st_size
    click.echo(f"file size {size_before:,} B -> {size_after:,} B ({size_after / size_before:.1%})")
    paired = report.speedup
    click.echo(
        f"speed-up over {model_path.name} on {report.target}: {paired.speedup:.2f}× "
        f"(95 % CI {paired.speedup_low:.2f}–{paired.speedup_high:.2f}; {paired.a.median_ms:.3f} -> "
        f"{paired.b.median_ms:.3f} ms)"
    )
    floats = quantized.float_operators
    if floats:
        names = ", ".join(f"{op.op_type} '{op.name}'" for op in floats[:10])
        more = f" and {len(floats) - 10} more" if len(floats) > 10 else ""
        click.echo(f"left in fp32 ({len(floats)}): {names}{more}")
    else:
        click.echo(f"every compute operator runs in INT8 ({quantized.n_quantized} quantized)")


def _payload(report: QuantizeReport, output: Path) -> dict:
    quantized = report.quantized
    choice = report.choice.qoperator_vs_qdq
    return {
        "output": str(output),
        "format": quantized.quant_format,
        "portable": quantized.portable,
        "target": report.target,
        "top1_before": report.accuracy_before.top1 if report.accuracy_before else None,
        "top1_after": report.accuracy_after.top1 if report.accuracy_after else None,
        "fidelity": report.fidelity.score if report.fidelity else None,
        "test_images": report.accuracy_after.n_images if report.accuracy_after else report.fidelity.n_samples,
        "calibration_images": report.n_calibration_images,
        "speedup": report.speedup.speedup,
        "speedup_ci": [report.speedup.speedup_low, report.speedup.speedup_high],
        "qdq_over_qoperator_speedup": None if choice is None else choice.speedup,
        "float_operators": [{"op_type": op.op_type, "name": op.name} for op in quantized.float_operators],
    }


@click.command("quantize")
@model_argument()
@data_option("Dataset whose training images calibrate the INT8 ranges and whose test images score it")
@output_option("Where to write the INT8 model.")
@click.option(
    "--format",
    "quant_format",
    type=click.Choice(FORMAT_CHOICES),
    default="auto",
    show_default=True,
    help="auto: quantize in both forms and keep the one measured faster on --target; qoperator: onnxruntime's "
    "fast CPU form; qdq: the portable form other runtimes read.",
)
@click.option("--calibration-images", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--test-images", type=click.IntRange(min=1), default=None, help="Score on a class-balanced subset.")
@target_option("Latency target the format choice and the speed-up are measured on.")
@click.option("--rounds", type=click.IntRange(min=2), default=10, show_default=True, help="Paired A-B-B-A rounds.")
@preprocessing_options
@json_option()
def command(
    model_path: Path,
    data_path: Path,
    output: Path,
    quant_format: str,
    calibration_images: int,
    test_images: int | None,
    target: str,
    rounds: int,
    preprocessing: Preprocessing,
    as_json: bool,
) -> None:
    """Static INT8 quantization of MODEL (per channel), with test top-1 before and after.

    Test images without labels score the INT8 model by its fidelity to the fp32 model's outputs instead.
    """
    model = load_model(model_path)
    config = QuantizeConfig(
        quant_format=quant_format,
        target=target,
        calibration_images=calibration_images,
        test_images=test_images,
        rounds=rounds,
    )
    report = run_quantize(
        model,
        data_path,
        config,
        on_stage=lambda message: click.echo(message, err=True),
        spec=preprocessing.spec(model),
        cache_dir=preprocessing.cache_dir,
    )
    save_model(report.quantized.model, output)
    if as_json:
        click.echo(json.dumps(_payload(report, output), indent=2))
    else:
        _render(report, model_path, output, model_file_size(model))
