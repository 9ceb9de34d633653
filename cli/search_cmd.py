"""``agmc-onnx search``: per-group keep ratios under a MACs or latency budget, written as a PruningPlan."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from agmc_onnx.cli.options import data_option, depth_option, model_argument
from agmc_onnx.cost import profile_names
from agmc_onnx.search import POLICY_NAMES

__all__ = ["command"]


def _progress(record, total: int) -> None:
    cached = " (cached)" if record.cached else ""
    click.echo(
        f"episode {record.episode + 1}/{total} [{record.policy}] reward {100 * record.reward:.1f} %{cached}, "
        f"best {100 * record.best_reward:.1f} %, MACs kept {100 * record.macs_kept_fraction:.1f} %, "
        f"{record.episode_seconds:.1f} s",
        err=True,
    )


@click.command("search")
@model_argument
@data_option("Dataset", must_exist=True)
@click.option(
    "--flops",
    "flops_keep_ratio",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=None,
    help="Budget: kept fraction of MACs, e.g. 0.5 for 2× fewer.",
)
@click.option(
    "--latency",
    "latency_keep_ratio",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=None,
    help="Budget: kept fraction of the original's median latency on --target, e.g. 0.6.",
)
@click.option(
    "--target",
    type=click.Choice(profile_names()),
    default="mobile-cpu",
    show_default=True,
    help="Latency target profile for --latency.",
)
@click.option("--episodes", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--policy", type=click.Choice(POLICY_NAMES), default="agmc", show_default=True)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=25,
    show_default=True,
    help="Random warm-up episodes before the agent acts (agmc, amc).",
)
@click.option(
    "--round-to",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Kept channels per group are a multiple of this (CPU kernels prefer multiples of 8).",
)
@click.option(
    "--lower-bound",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=0.2,
    show_default=True,
    help="Smallest keep ratio any group may get.",
)
@click.option(
    "--action-center",
    type=click.Choice(["none", "uniform"]),
    default="none",
    show_default=True,
    help="uniform: action 0.5 means the largest uniform keep ratio that meets the budget.",
)
@click.option(
    "--reward-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Held-out TRAIN images that score each candidate.",
)
@click.option(
    "--no-bn-recal",
    is_flag=True,
    help="Score candidates without re-estimating BatchNormalization statistics.",
)
@depth_option
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Episode log and checkpoints [default: OUTPUT with suffix .run].",
)
@click.option("--resume", is_flag=True, help="Continue the search stored in --run-dir.")
@click.option(
    "--save-model",
    "save_model_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the best pruned model (with re-estimated BatchNormalization statistics).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the PruningPlan JSON (apply it with `agmc-onnx prune --ratios`).",
)
def command(
    model_path: Path,
    data_path: Path,
    flops_keep_ratio: float | None,
    latency_keep_ratio: float | None,
    target: str,
    episodes: int,
    policy: str,
    warmup: int,
    round_to: int,
    lower_bound: float,
    action_center: str,
    reward_size: int,
    no_bn_recal: bool,
    depth_threshold: float | None,
    seed: int,
    run_dir: Path | None,
    resume: bool,
    save_model_path: Path | None,
    output: Path,
) -> None:
    """Search per-group keep ratios for MODEL under a MACs (--flops) or latency (--latency) budget."""
    if (flops_keep_ratio is None) == (latency_keep_ratio is None):
        raise click.UsageError("give exactly one budget: --flops F or --latency L")
    if resume and run_dir is None and not output.with_suffix(".run").exists():
        raise click.BadParameter(
            f"nothing to resume: {output.with_suffix('.run')} does not exist", param_hint="--resume"
        )
    # Imported here: torch and torch-geometric load only when a search really runs.
    import torch

    from agmc_onnx.analysis import analyze_model
    from agmc_onnx.data import load_splits, spec_from_model
    from agmc_onnx.io import load_model, save_model, write_bytes_atomic
    from agmc_onnx.search import AccuracyReward, DDPGConfig, RewardConfig, SearchConfig, run_search

    torch.set_num_threads(1)  # the agent's networks are small; one thread leaves the cores to onnxruntime
    model = load_model(model_path)
    spec = spec_from_model(model)
    reward_set = load_splits(data_path, spec, reward_size=reward_size, seed=seed).reward
    analysis = analyze_model(model)
    reward = AccuracyReward(analysis, reward_set, spec, RewardConfig(recalibrate_bn=not no_bn_recal))
    config = SearchConfig(
        policy=policy,
        n_episodes=episodes,
        flops_keep_ratio=flops_keep_ratio,
        latency_keep_ratio=latency_keep_ratio,
        target=target,
        round_to=round_to,
        lower_bound=lower_bound,
        seed=seed,
        ddpg=DDPGConfig(warmup_episodes=warmup),
        action_center=action_center,
        depth_threshold=depth_threshold,
    )
    run_dir = run_dir or output.with_suffix(".run")
    click.echo(
        f"searching {len(analysis.prunable_groups)} channel groups of {model_path.name}; log in {run_dir}",
        err=True,
    )
    result = run_search(analysis, reward, config, run_dir=run_dir, resume=resume, progress=_progress)
    # The plan holds keep ratios only: say how its reward was scored, so whoever applies it knows the
    # accuracy assumed re-estimated BatchNormalization statistics (`--save-model` writes them).
    scored = {"reward_images": reward_set.n_images, "reward_bn_recalibrated": not no_bn_recal}
    plan = dataclasses.replace(result.plan, metadata={"search": {**result.plan.metadata["search"], **scored}})
    best_model = reward.pruned_model(reward.selection_of(plan)) if (save_model_path or result.latency_fit) else None
    if result.latency_fit is not None:
        plan = _with_measured_latency(plan, result.latency_fit, best_model, target)
    write_bytes_atomic(output, plan.to_json().encode())
    if save_model_path is not None:
        save_model(best_model, save_model_path)
    click.echo(_summary(policy, result, reward_set.n_images, output))


def _with_measured_latency(plan, fit, best_model, target: str):
    """The plan with the final model's measured latency beside the model's prediction (also shown)."""
    from agmc_onnx.cost import measure_latency

    measured = measure_latency(best_model, target).median_ms
    search_meta = {**plan.metadata["search"], "measured_latency_ms": measured}
    click.echo(
        f"latency on {target}: predicted {search_meta['predicted_latency_ms']:.3f} ms, "
        f"measured {measured:.3f} ms (original {fit.original_ms:.3f} ms)"
    )
    return dataclasses.replace(plan, metadata={**plan.metadata, "search": search_meta})


def _summary(policy: str, result, n_images: int, output: Path) -> str:
    best = result.records[result.best_episode]
    return (
        f"{policy}: best reward top-1 {100 * result.best_reward:.2f} % on {n_images} held-out train images "
        f"(episode {result.best_episode + 1}/{len(result.records)}), "
        f"MACs kept {100 * best.macs_kept_fraction:.1f} %, "
        f"{result.n_evaluations} evaluations, {result.seconds:.0f} s; plan written to {output}"
    )
