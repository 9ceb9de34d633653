"""Files of a finished run: the model, report.json, report.md, the episode log and the plots (all atomic)."""

from __future__ import annotations

import shutil
from pathlib import Path

from agmc_onnx.compress.pipeline import CompressRun
from agmc_onnx.compress.plots import plot_accuracy_vs_macs, plot_channels, plot_latency
from agmc_onnx.compress.report import render_markdown
from agmc_onnx.io import save_model, write_bytes_atomic

__all__ = ["write_outputs"]


def write_outputs(run: CompressRun, out_dir: Path) -> dict[str, Path]:
    """Write every output; the report is written whether or not the gate passed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = run.report
    paths = {"model": save_model(run.model, out_dir / "model.onnx")}
    plots = {
        "accuracy_vs_macs": plot_accuracy_vs_macs(
            run.search.records, run.search.best_episode, out_dir / "accuracy_vs_macs.png"
        ),
        "channels": plot_channels(report.groups, out_dir / "channels.png"),
    }
    shipped = report.quantized or report.final
    if report.original.latency_median_ms is not None and shipped.latency_median_ms is not None:
        plots["latency"] = plot_latency(
            ["original", "compressed + INT8" if report.quantized else "compressed"],
            [report.original.latency_median_ms, shipped.latency_median_ms],
            [report.original.latency_p90_ms, shipped.latency_p90_ms],
            report.target,
            out_dir / "latency.png",
        )
    episodes = out_dir / ".work" / "search" / "episodes.jsonl"
    if episodes.exists():
        tmp = out_dir / ".episodes.jsonl.tmp"
        shutil.copyfile(episodes, tmp)
        tmp.replace(out_dir / "episodes.jsonl")
        paths["episodes"] = out_dir / "episodes.jsonl"
    write_bytes_atomic(out_dir / "report.json", report.to_json().encode())
    markdown = render_markdown(report, {name: path.name for name, path in plots.items()})
    write_bytes_atomic(out_dir / "report.md", markdown.encode())
    paths.update({"report_json": out_dir / "report.json", "report_md": out_dir / "report.md"})
    paths.update({f"plot_{name}": path for name, path in plots.items()})
    return paths
