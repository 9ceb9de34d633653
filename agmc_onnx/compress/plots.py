"""Plots of a compression run (PNG files). Matplotlib runs headless (Agg)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["plot_accuracy_vs_macs", "plot_channels", "plot_latency"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_vs_macs(records: Sequence, best_episode: int, path: Path) -> Path:
    """Every evaluated policy: reward accuracy against the MACs it keeps; the chosen one is starred."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    macs = [100 * r.macs_kept_fraction for r in records]
    reward = [100 * r.reward for r in records]
    ax.scatter(macs, reward, c=range(len(records)), cmap="viridis", s=18, label="evaluated policies")
    best = records[best_episode]
    ax.scatter([100 * best.macs_kept_fraction], [100 * best.reward], marker="*", s=220, c="red", label="chosen")
    ax.set_xlabel("MACs kept (% of original)")
    ax.set_ylabel("reward top-1 without fine-tuning (%)")
    ax.set_title("Search: every episode (colour = episode)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_channels(groups: Sequence[dict], path: Path) -> Path:
    """Kept channels per prunable group, original against pruned."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(groups)), 4))
    xs = range(len(groups))
    ax.bar(xs, [g["channels_before"] for g in groups], color="#cccccc", label="original")
    ax.bar(xs, [g["channels_after"] for g in groups], color="#1f77b4", label="pruned")
    ax.set_xticks(list(xs), [g["id"] for g in groups], rotation=90, fontsize=7)
    ax.set_ylabel("channels")
    ax.set_title("Channels per group")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency(
    labels: Sequence[str], medians_ms: Sequence[float], p90s_ms: Sequence[float], target: str, path: Path
) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    errors = [max(p - m, 0.0) for m, p in zip(medians_ms, p90s_ms)]
    ax.bar(labels, medians_ms, yerr=[[0] * len(errors), errors], color=["#999999", "#2ca02c"], capsize=6)
    ax.set_ylabel("latency (ms): median, bar to p90")
    ax.set_title(f"onnxruntime on {target}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
