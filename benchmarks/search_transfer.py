"""Does an agent trained on other networks search an unseen one better? Leave-one-out over the zoo.

    nice -n 19 python benchmarks/search_transfer.py --data ../shared/data/cifar10 \\
        -o benchmarks/results/search_transfer                                   # the full protocol

For each held-out network T of ``--models``: one agmc agent is trained on the other networks in turn
(``--train-episodes`` each, every network starting from the agent the previous one left: encoder, actor
and critic carry over, the replay buffer does not; the saved actor is fitted to the best plan of every
network it searched, ``agmc_onnx.search.imitation``), saved, and started on T. Compared on T, at
``--flops`` MACs, each plan's test top-1 without fine-tuning (BatchNormalization re-estimated on the reward
images) on ``--test-size`` test images:

    uniform         one keep ratio for every group (the reference every search should beat)
    transferred-0   the saved policy applied as is (one episode, no exploration, no update)
    transferred-N   the saved agent, ``--short`` episodes of search on T (no warm-up; the first episode is
                    the policy as is; the encoder fixed and the best plan so far imitated, the defaults of a
                    search from a saved agent; the training searches learn as from scratch)
    scratch-N       a fresh agent, ``--short`` episodes
    scratch-long    a fresh agent, ``--long`` episodes (the issue's 300)

The goal stated for the full protocol: transferred-N ≥ scratch-long − 1 point on at least two networks.
Every search's reward is top-1 on ``--reward-size`` held-out TRAIN images after BN re-estimation.
Runs and agents are kept under OUTPUT.runs/ and resumed, so the full protocol can be run in pieces.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from agmc_onnx.analysis import analyze_model
from agmc_onnx.cost import create_session
from agmc_onnx.data import load_splits, sample_subset, spec_from_model
from agmc_onnx.evaluate import evaluate_accuracy
from agmc_onnx.io import load_model, write_bytes_atomic
from agmc_onnx.search import DDPGConfig, EncoderConfig, SearchConfig, search_model
from agmc_onnx.search.agent import SCRATCH_ENCODER_LR, SCRATCH_SIGMA
from agmc_onnx.search.transfer import save_agent

SHARED_MODELS = Path(__file__).resolve().parents[1] / ".." / "shared" / "models"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Network:
    """One zoo model with its reward set, test subset and analysis."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        self.name = name
        self.model = load_model(SHARED_MODELS / f"cifar10_{name}.onnx")
        self.spec = spec_from_model(self.model)
        splits = load_splits(args.data, self.spec, reward_size=args.reward_size, seed=args.seed)
        self.reward_set = splits.reward
        self.test = sample_subset(splits.test, args.test_size, seed=args.seed)
        self.analysis = analyze_model(self.model)

    def search(self, args, run_dir: Path, episodes: int, agent: Path | None = None, policy: str = "agmc",
               ddpg: DDPGConfig | None = None):
        config = SearchConfig(
            policy=policy,
            n_episodes=episodes,
            flops_keep_ratio=args.flops,
            seed=args.seed,
            workers=args.workers,
            agent=str(agent) if agent else None,
            encoder=EncoderConfig(pretrain_epochs=args.pretrain_epochs),
            budget_mode=args.budget_mode,
            **({"ddpg": ddpg} if ddpg is not None else {}),
        )
        return search_model(self.analysis, self.reward_set, config, spec=self.spec, run_dir=run_dir, resume=True)

    def test_top1(self, result) -> float:
        session = create_session(result.best_model(), result.reward.config.profile())
        return evaluate_accuracy(session, self.test, self.spec).top1


# Training searches learn as a search from scratch does, the encoder too, whether or not they start from the
# agent the previous network left (a search from a saved agent otherwise fixes the encoder and imitates).
LEARNING = DDPGConfig(
    imitation_weight=0.0, encoder_lr=SCRATCH_ENCODER_LR, sigma_start=SCRATCH_SIGMA, sigma_wide=0.0
)


def train_agent(held_out: str, networks: dict, args, runs: Path) -> Path:
    """An agent trained on every network but ``held_out``: ``--rounds`` rounds, each giving every network in
    turn its share of ``--train-episodes`` (one round: one network after the other; more rounds interleave
    them, so the agent the held-out network gets has not just been fitted to the last network alone)."""
    agent = None
    share = max(1, args.train_episodes // args.rounds)
    for round_ in range(args.rounds):
        for name, network in networks.items():
            if name == held_out:
                continue
            tag = name if args.rounds == 1 else f"{name}_round{round_}"
            result = network.search(args, runs / f"without_{held_out}" / f"train_{tag}", share, agent, ddpg=LEARNING)
            agent = runs / f"without_{held_out}" / f"agent_after_{tag}.pt"
            save_agent(result.agent, agent)
            log(f"agent without {held_out}: trained on {tag}, best reward {100 * result.best_reward:.1f} %")
    return agent


def evaluate_fold(held_out: str, networks: dict, args, runs: Path) -> dict:
    agent = train_agent(held_out, networks, args, runs)
    target, folder = networks[held_out], runs / f"without_{held_out}"
    arms = {
        "uniform": (1, None),
        "transferred-0": (0, agent),
        f"transferred-{args.short}": (args.short, agent),
        f"scratch-{args.short}": (args.short, None),
        f"scratch-{args.long}": (args.long, None),
    }
    row = {}
    for arm, (episodes, start) in arms.items():
        started = time.perf_counter()
        result = target.search(args, folder / arm, episodes, start, "uniform" if arm == "uniform" else "agmc")
        row[arm] = {
            "test_top1": target.test_top1(result),
            "best_reward": result.best_reward,
            "episodes": len(result.records),
            "seconds": time.perf_counter() - started,
        }
        log(f"{held_out} {arm}: test top-1 {100 * row[arm]['test_top1']:.1f} %")
    gap = row[f"transferred-{args.short}"]["test_top1"] - row[f"scratch-{args.long}"]["test_top1"]
    row["transferred_minus_scratch_long_points"] = 100 * gap
    return row


NOT_IN_COMMAND = ("output", "runs", "held_out", "previous", "previous_label")  # where it ran, not what


def markdown(results: dict, args) -> str:
    arms = ["uniform", "transferred-0", f"transferred-{args.short}", f"scratch-{args.short}", f"scratch-{args.long}"]
    previous = json.loads(args.previous.read_text())["folds"] if args.previous else None
    lines = [
        "# Agent transfer, leave-one-out",
        "",
        f"Scale: {results['scale']}. Machine: {results['machine']}, load average {results['load']}. "
        f"Command: `{results['command']}`.",
        "",
        "Test top-1 without fine-tuning (BN re-estimated) at "
        f"{args.flops:.0%} MACs on {args.test_size} test images; one seed ({args.seed}).",
        "",
        "| held-out network | " + " | ".join(arms) + " | transferred − scratch-long (points) |"
        + (f" transferred-{args.short}, {args.previous_label} |" if previous is not None else ""),
        "|---|" + "---|" * (len(arms) + 1 + (previous is not None)),
    ]
    for name, row in results["folds"].items():
        cells = [f"{100 * row[arm]['test_top1']:.1f} %" for arm in arms]
        line = f"| {name} | " + " | ".join(cells) + f" | {row['transferred_minus_scratch_long_points']:+.1f} |"
        if previous is not None:
            earlier = previous.get(name, {}).get(f"transferred-{args.short}")
            line += f" {100 * earlier['test_top1']:.1f} % |" if earlier else " — |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--models", default="resnet20,resnet56,mobilenetv2")
    parser.add_argument("--flops", type=float, default=0.5)
    parser.add_argument("--train-episodes", type=int, default=300)
    parser.add_argument("--short", type=int, default=20)
    parser.add_argument("--long", type=int, default=300)
    parser.add_argument("--reward-size", type=int, default=1000)
    parser.add_argument("--test-size", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="interleave the training networks in this many rounds")
    parser.add_argument("--budget-mode", default="wall", choices=("wall", "rescale"), help="search --budget-mode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held-out", default=None,
                        help="only these folds (comma-separated; default: every model); a later run over every "
                             "fold reads the finished runs back and writes the whole table")
    parser.add_argument("--pretrain-epochs", type=int, default=300, help="GNN auto-encoder pre-training")
    parser.add_argument("--runs", type=Path, default=None, help="run directories [OUTPUT.runs]")
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks/results/search_transfer"))
    parser.add_argument("--previous", type=Path, default=None, help="an earlier result JSON of this protocol: its "
                        "transferred-SHORT column is shown beside this run's")
    parser.add_argument("--previous-label", default="earlier run", help="what differed in --previous")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = args.runs or args.output.with_suffix(".runs")
    networks = {name: Network(name, args) for name in args.models.split(",")}
    results = {
        "scale": f"train {args.train_episodes} episodes per source network in {args.rounds} round(s), short "
        f"{args.short}, long {args.long}, "
        f"reward {args.reward_size} images, test {args.test_size} images, GNN pre-training {args.pretrain_epochs} "
        f"epochs, budget mode {args.budget_mode}",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "command": "python benchmarks/search_transfer.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in NOT_IN_COMMAND
        ),
        "folds": {},
    }
    for name in args.held_out.split(",") if args.held_out else networks:
        results["folds"][name] = evaluate_fold(name, networks, args, runs)
    results["load"] = [round(x, 1) for x in os.getloadavg()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(args.output.with_suffix(".json"), json.dumps(results, indent=2).encode())
    write_bytes_atomic(args.output.with_suffix(".md"), markdown(results, args).encode())
    print(markdown(results, args))


if __name__ == "__main__":
    main()
