"""The compression report: one dataclass, rendered as JSON (for CI) and Markdown (for people)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from agmc_onnx.cost import TIMING_TOLERANCE

__all__ = ["ModelFigures", "GateResult", "CompressionReport", "REPORT_SCHEMA_VERSION", "render_markdown"]

REPORT_SCHEMA_VERSION = 2


@dataclass(frozen=True)
class ModelFigures:
    """What one model version measures: size, cost, accuracy and latency (None where not measured)."""

    macs: int
    params: int
    file_bytes: int
    test_top1: float | None = None
    latency_median_ms: float | None = None
    latency_p90_ms: float | None = None
    test_fidelity: float | None = None  # agreement with the original's outputs on the test inputs, in [0, 1]


@dataclass(frozen=True)
class GateResult:
    passed: bool
    budget_met: bool
    accuracy_ok: bool
    reasons: tuple[str, ...] = ()
    fidelity_ok: bool = True

    @property
    def verdict(self) -> str:
        """``"passed"``, or the first failed check: ``"budget"`` (it outranks accuracy) or ``"accuracy"``."""
        if self.passed:
            return "passed"
        return "budget" if not self.budget_met else "accuracy"


@dataclass(frozen=True)
class CompressionReport:
    model: str
    output: str
    target: str
    budget_kind: str  # "flops" | "latency"
    budget_keep_fraction: float
    achieved_keep_fraction: float  # MACs (flops) or median latency (latency) of final / original
    policy: str
    episodes: int
    best_episode: int
    best_reward_top1: float
    keep_ratios: dict
    original: ModelFigures
    searched: ModelFigures  # pruned with the best policy, BatchNormalization re-estimated, no fine-tuning
    final: ModelFigures
    speedup: float | None
    speedup_low: float | None
    speedup_high: float | None
    accuracy_drop_points: float | None
    max_accuracy_drop_points: float | None
    gate: GateResult
    data: dict
    timings_s: dict
    groups: list = field(default_factory=list)  # per group: id, name, channels before and after
    quantized: ModelFigures | None = None  # the INT8 model that ships, when quantization was asked for
    quantized_format: str | None = None  # "qoperator" | "qdq"
    config: dict = field(default_factory=dict)
    converted_from_opset: int | None = None  # the file's opset when it was converted on load
    task: str = "accuracy"  # "accuracy" (labelled top-1) | "fidelity" (agreement with the original)
    task_reason: str = ""
    fidelity_metric: str = ""  # "top-1 agreement" | "1 − relative L2"
    fidelity_loss_points: float | None = None
    max_fidelity_loss_points: float | None = None
    preprocessing: str = ""  # what turned the data into model inputs
    # A latency budget closed by measurement: each check's predicted and measured fraction of the original's
    # latency, the one shipped, and that plan's figures (``compress.latency_stage``); None when not checked.
    latency_check: dict | None = None
    schema_version: int = REPORT_SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f} ms"


def _row(label: str, figures: ModelFigures, original: ModelFigures) -> str:
    return (
        f"| {label} | {_pct(figures.test_top1)} | {_pct(figures.test_fidelity)} "
        f"| {figures.macs / 1e6:.2f} M ({figures.macs / original.macs:.0%}) "
        f"| {figures.params / 1e6:.3f} M | {figures.file_bytes / 1e6:.2f} MB | {_ms(figures.latency_median_ms)} |"
    )


_FORMAT_NOTE = {
    "qoperator": "QOperator form: onnxruntime's fast CPU form; other runtimes such as OpenVINO do not load it",
    "qdq": "QDQ form: portable to OpenVINO, TensorRT and other runtimes",
}


def _int8_rows(report: CompressionReport) -> list[str]:
    if report.quantized is None:
        return []
    label = f"INT8 ({report.quantized_format}), shipped"
    return [_row(label, report.quantized, report.original), "", f"INT8 {_FORMAT_NOTE[report.quantized_format]}."]


def _latency_check_lines(report: CompressionReport) -> list[str]:
    check = report.latency_check
    if check is None:
        return []
    steps = ", ".join(f"predicted {c['predicted_fraction']:.3f} → measured {c['measured_fraction']:.3f}"
                      for c in check["checks"])
    lines = [f"- Latency budget closed by measurement ({len(check['checks'])} timing(s) of the plan as it ships, "
             f"before fine-tuning; tolerance ±{check['tolerance']:.0%}): {steps} of the original; shipped check "
             f"{check['shipped_check'] + 1}: predicted {check['predicted_fraction']:.3f}, "
             f"measured {check['measured_fraction']:.3f}"]
    final = check.get("final_speedups", [])
    if len(final) > 1:
        lines.append(f"- The final timing disagreed with the check by more than the tolerance, so the shipped model "
                     f"was timed {len(final)} times ({', '.join(f'{v:.2f}×' for v in final)}); the median is reported")
    return lines


def render_markdown(report: CompressionReport, plots: dict[str, str]) -> str:
    gate = "PASSED" if report.gate.passed else "FAILED: " + "; ".join(report.gate.reasons)
    speed = (
        f"{report.speedup:.2f}× (95 % interval {report.speedup_low:.2f}–{report.speedup_high:.2f})"
        if report.speedup is not None
        else "not measured"
    )
    lines = [
        f"# Compression report: `{report.model}`",
        "",
        f"- Output: `{report.output}`",
        *(
            [f"- The model file is at opset {report.converted_from_opset}; it was converted on load (ONNX converter)"]
            if report.converted_from_opset is not None
            else []
        ),
        f"- Target: `{report.target}`; budget: keep {report.budget_keep_fraction:.0%} of the original "
        f"{'MACs' if report.budget_kind == 'flops' else 'median latency'}"
        f"{'' if report.budget_kind == 'flops' else f' (met within +{TIMING_TOLERANCE:.0%}: timing noise)'}; "
        f"achieved {report.achieved_keep_fraction:.1%}",
        f"- Task: **{report.task}** ({report.task_reason}); fidelity to the original: {report.fidelity_metric}",
        f"- Preprocessing: {report.preprocessing}",
        f"- Policy: `{report.policy}`, {report.episodes} episodes, best at episode {report.best_episode + 1} "
        f"(reward {'top-1' if report.task == 'accuracy' else 'fidelity'} {_pct(report.best_reward_top1)} on "
        f"{report.data.get('reward_images')} held-out train inputs)",
        f"- Latency speed-up on `{report.target}` (paired, interleaved): {speed}",
        *_latency_check_lines(report),
        f"- Accuracy drop: {report.accuracy_drop_points:.2f} points"
        if report.accuracy_drop_points is not None
        else "- Accuracy drop: not measured (no labels used)",
        f"- Fidelity loss: {report.fidelity_loss_points:.2f} points"
        if report.fidelity_loss_points is not None
        else "- Fidelity loss: not measured",
        f"- Gate: **{gate}**",
        "",
        "| model | test top-1 | fidelity | MACs | params | file | latency (median) |",
        "|---|---|---|---|---|---|---|",
        _row("original", report.original, report.original),
        _row("after search (no fine-tuning)", report.searched, report.original),
        _row("after fine-tuning", report.final, report.original),
        *_int8_rows(report),
        "",
        f"Test set: {report.data.get('test_images')} images; fine-tuning: {report.data.get('finetune_images')} "
        f"images × {report.config.get('finetune_epochs')} epoch(s). "
        "Times: " + ", ".join(f"{k} {v:.0f} s" for k, v in report.timings_s.items()) + ".",
        "",
    ]
    for title, name in (
        ("Accuracy against MACs", "accuracy_vs_macs"),
        ("Channels per group", "channels"),
        ("Latency", "latency"),
    ):
        if name in plots:
            lines += [f"## {title}", "", f"![{title}]({plots[name]})", ""]
    return "\n".join(lines)
