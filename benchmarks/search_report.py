"""Plots and a Markdown table from ``search_zoo.py`` results: accuracy against episode per model and
policy, and the GNN auto-encoder's loss curve.

    python benchmarks/search_report.py -o benchmarks/results/search
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"agmc": "tab:red", "amc": "tab:blue", "random": "tab:gray", "uniform": "black"}


def read_log(run_dir: Path) -> list[dict]:
    path = run_dir / "episodes.jsonl"
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )


def plot_rewards(out: Path, model: str, tag: str) -> Path:
    figure, axis = plt.subplots(figsize=(7, 4.2))
    for policy, color in COLORS.items():
        records = read_log(out / "runs" / f"{model}_{policy}{tag}")
        if not records:
            continue
        episodes = [r["episode"] + 1 for r in records]
        if policy == "uniform":
            axis.axhline(
                100 * records[0]["reward"], color=color, linestyle=":", label="uniform (1 evaluation)"
            )
            continue
        axis.scatter(episodes, [100 * r["reward"] for r in records], s=6, color=color, alpha=0.35)
        axis.plot(
            episodes, [100 * r["best_reward"] for r in records], color=color, label=f"{policy} (best so far)"
        )
    axis.set_xlabel("episode (= reward evaluations)")
    axis.set_ylabel("reward: top-1 % on 1,000 held-out train images")
    axis.set_title(f"{model}, 50 % MACs kept, no fine-tuning {tag.strip('_')}".strip())
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    path = out / f"reward_vs_episode_{model}{tag}.png"
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_encoder(out: Path, models: list[str], tag: str) -> Path:
    figure, (pre, during) = plt.subplots(1, 2, figsize=(10, 3.8))
    for model in models:
        run_dir = out / "runs" / f"{model}_agmc{tag}"
        loss_path = run_dir / "encoder_pretrain_loss.json"
        if loss_path.exists():
            pre.plot(json.loads(loss_path.read_text()), label=model)
        records = [r for r in read_log(run_dir) if r["losses"]]
        during.plot(
            [r["episode"] + 1 for r in records], [r["losses"]["reconstruction"] for r in records], label=model
        )
    pre.set(title="auto-encoder pre-training", xlabel="epoch", ylabel="edge BCE + feature MSE")
    during.set(
        title="reconstruction loss during the search\n(encoder also trained by the critic)", xlabel="episode"
    )
    for axis in (pre, during):
        axis.grid(alpha=0.3)
        axis.legend()
    path = out / f"encoder_loss{tag}.png"
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def table(rows: list[dict]) -> str:
    lines = [
        "| model | policy | evaluations (episodes) | reward top-1 | test top-1, BN re-estimated "
        "| test top-1, plain | MACs kept | search wall s | budget met every episode |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        plain = f"{100 * r['test_top1_plain']:.2f} %" if "test_top1_plain" in r else "—"
        recalibrated = f"**{100 * r['test_top1_bn_recalibrated']:.2f} %**"
        lines.append(
            f"| {r['model']} | {r['policy']} | {r['evaluations']} ({r['episodes']}) "
            f"| {100 * r['reward_top1']:.1f} % | {recalibrated} | {plain} "
            f"| {100 * r['macs_kept_fraction']:.1f} % | {r['search_seconds']:.0f} "
            f"| {r['budget_met_every_episode']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=Path("benchmarks/results/search"))
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    results = json.loads((args.out / f"results{args.tag}.json").read_text())
    models = list(dict.fromkeys(r["model"] for r in results["results"]))
    for model in models:
        print(plot_rewards(args.out, model, args.tag))
    print(plot_encoder(args.out, models, args.tag))
    (args.out / f"table{args.tag}.md").write_text(table(results["results"]) + "\n")
    print(table(results["results"]))


if __name__ == "__main__":
    main()
