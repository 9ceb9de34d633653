"""``agmc-onnx search``: per-group keep ratios under a MACs or latency budget, written as a PruningPlan."""

from __future__ import annotations

from pathlib import Path

import click

from agmc_onnx.cli.options import (
    budget_options,
    data_option,
    depth_option,
    episodes_option,
    model_argument,
    output_option,
    policy_option,
    round_to_option,
    target_option,
)
from agmc_onnx.cli.progress import ProgressRenderer

__all__ = ["command"]


@click.command("search")
@model_argument()
@data_option("Dataset", must_exist=True)
@budget_options()
@target_option()
@episodes_option()
@policy_option()
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=None,
    help="Random warm-up episodes before the agent acts (agmc, amc) [25, fewer below 100 episodes].",
)
@round_to_option()
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
@output_option("Where to write the PruningPlan JSON (apply it with `agmc-onnx prune --ratios`).")
def command(
    model_path: Path,
    data_path: Path,
    reward_size: int,
    no_bn_recal: bool,
    run_dir: Path | None,
    resume: bool,
    save_model_path: Path | None,
    output: Path,
    **search_options,
) -> None:
    """Search per-group keep ratios for MODEL under a MACs (--flops) or latency (--latency) budget."""
    # Imported here: torch and torch-geometric load only when a search really runs.
    import torch

    from agmc_onnx.analysis import analyze_model
    from agmc_onnx.io import load_model, save_model, write_bytes_atomic
    from agmc_onnx.search import RewardConfig, search_model

    config = _search_config(**search_options)
    if resume and run_dir is None and not output.with_suffix(".run").exists():
        raise click.BadParameter(
            f"nothing to resume: {output.with_suffix('.run')} does not exist", param_hint="--resume"
        )
    torch.set_num_threads(1)  # the agent's networks are small; one thread leaves the cores to onnxruntime
    run_dir = run_dir or output.with_suffix(".run")
    analysis = analyze_model(load_model(model_path))
    click.echo(
        f"searching {len(analysis.prunable_groups)} channel groups of {model_path.name}; log in {run_dir}",
        err=True,
    )
    with ProgressRenderer() as progress:
        result = search_model(
            analysis,
            data_path,
            config,
            reward=RewardConfig(recalibrate_bn=not no_bn_recal),
            reward_size=reward_size,
            run_dir=run_dir,
            resume=resume,
            progress=progress,
        )
    write_bytes_atomic(output, result.plan.to_json().encode())
    if save_model_path is not None:
        save_model(result.best_model(), save_model_path)
    search = result.plan.metadata["search"]
    if result.latency_fit is not None:
        click.echo(
            f"latency on {config.target}: predicted {search['predicted_latency_ms']:.3f} ms, "
            f"measured {search['measured_latency_ms']:.3f} ms (original {result.latency_fit.original_ms:.3f} ms)"
        )
    click.echo(_summary(config.policy, result, search["reward_images"], output))


def _search_config(flops, latency, episodes, warmup, **same_names):
    """The SearchConfig of the options; the library's budget check becomes a usage error."""
    from agmc_onnx.errors import PreconditionError
    from agmc_onnx.search import DDPGConfig, SearchConfig

    try:
        return SearchConfig(
            n_episodes=episodes,
            flops_keep_ratio=flops,
            latency_keep_ratio=latency,
            ddpg=DDPGConfig(warmup_episodes=warmup),
            **same_names,
        )
    except PreconditionError as exc:
        raise click.UsageError(f"{exc} (--flops F or --latency L)") from None


def _summary(policy: str, result, n_images: int, output: Path) -> str:
    best = result.records[result.best_episode]
    return (
        f"{policy}: best reward top-1 {100 * result.best_reward:.2f} % on {n_images} held-out train images "
        f"(episode {result.best_episode + 1}/{len(result.records)}), "
        f"MACs kept {100 * best.macs_kept_fraction:.1f} %, "
        f"{result.n_evaluations} evaluations, {result.seconds:.0f} s; plan written to {output}"
    )
