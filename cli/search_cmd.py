"""``agmc-onnx search``: per-group keep ratios under a MACs or latency budget, written as a PruningPlan."""

from __future__ import annotations

from pathlib import Path

import click

from agmc_onnx.cli.options import (
    Preprocessing,
    budget_options,
    data_option,
    depth_option,
    episodes_option,
    model_argument,
    output_option,
    path_option,
    policy_option,
    preprocessing_options,
    round_to_option,
    target_option,
    task_option,
    valued_option,
    workers_options,
)
from agmc_onnx.cli.progress import ProgressRenderer

__all__ = ["command"]


@click.command("search")
@model_argument()
@data_option("Dataset", must_exist=True)
@budget_options()
@target_option()
@episodes_option(zero_applies_agent=True)
@policy_option()
@valued_option(
    "--warmup",
    type=click.IntRange(min=0),
    help="Random warm-up episodes before the agent acts (agmc, amc) [25, fewer below 100 episodes].",
)
@round_to_option()
@valued_option(
    "--lower-bound",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=0.2,
    help="Smallest keep ratio any group may get.",
)
@valued_option(
    "--action-center",
    type=click.Choice(["none", "uniform", "budget-relative"]),
    default="none",
    help="uniform: action 0.5 means the largest uniform keep ratio that meets the budget; budget-relative: "
    "the one that meets the budget left for this and the later groups (over-keeping early lowers later steps).",
)
@valued_option(
    "--budget-mode",
    type=click.Choice(["wall", "rescale"]),
    default="wall",
    help="wall: clip each step so the budget stays reachable (AMC); rescale: multiply every keep ratio of the "
    "finished episode by one factor that meets the budget (the agent picks the plan's shape).",
)
@valued_option(
    "--reward-size", type=click.IntRange(min=1), default=1000, help="Held-out TRAIN images that score each candidate."
)
@click.option(
    "--no-bn-recal", is_flag=True, help="Score candidates without re-estimating BatchNormalization statistics."
)
@depth_option
@task_option
@preprocessing_options
@valued_option("--seed", type=int, default=0)
@workers_options()
@path_option("--run-dir", folder=True, help="Episode log and checkpoints [default: OUTPUT with suffix .run].")
@click.option("--resume", is_flag=True, help="Continue the search stored in --run-dir.")
@path_option(
    "--save-model",
    "save_model_path",
    help="Also write the best pruned model (with re-estimated BatchNormalization statistics).",
)
@click.option(
    "--agent",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Start from an agent saved by --save-agent (any network; agmc or amc, as saved): no warm-up unless "
    "--warmup is given.",
)
@path_option(
    "--save-agent",
    "save_agent_path",
    help="Also write the learned agent (encoder, actor, critic) for --agent on other networks.",
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
    task: str | None,
    preprocessing: Preprocessing,
    save_agent_path: Path | None,
    output: Path,
    **search_options,
) -> None:
    """Search per-group keep ratios for MODEL under a MACs (--flops) or latency (--latency) budget."""
    # Imported here: torch and torch-geometric load only when a search really runs.
    import torch

    from agmc_onnx.analysis import analyze_model
    from agmc_onnx.io import load_model
    from agmc_onnx.search import RewardConfig, search_model

    config = _search_config(**search_options)
    if save_agent_path is not None and config.policy not in ("agmc", "amc"):
        raise click.BadParameter(f"the {config.policy} policy learns no agent to save", param_hint="--save-agent")
    if resume and run_dir is None and not output.with_suffix(".run").exists():
        raise click.BadParameter(
            f"nothing to resume: {output.with_suffix('.run')} does not exist", param_hint="--resume"
        )
    torch.set_num_threads(1)  # the agent's networks are small; one thread leaves the cores to onnxruntime
    run_dir = run_dir or output.with_suffix(".run")
    model = load_model(model_path)
    analysis = analyze_model(model)
    data, spec, task = _reward_data(model, data_path, task or "auto", preprocessing, reward_size, config.seed)
    click.echo(
        f"searching {len(analysis.prunable_groups)} channel groups of {model_path.name} by {task}; log in {run_dir}",
        err=True,
    )
    with ProgressRenderer() as progress:
        result = search_model(
            analysis,
            data,
            config,
            spec=spec,
            task=task,
            reward=RewardConfig(recalibrate_bn=not no_bn_recal),
            reward_size=reward_size,
            run_dir=run_dir,
            resume=resume,
            progress=progress,
        )
    _write_and_report(result, config, task, output, save_model_path, save_agent_path)


def _write_and_report(result, config, task: str, output: Path, save_model_path, save_agent_path) -> None:
    """The plan (and the best model, the agent when asked) written; the outcome on stdout."""
    from agmc_onnx.io import save_model, write_bytes_atomic

    write_bytes_atomic(output, result.plan.to_json().encode())
    if save_model_path is not None:
        save_model(result.best_model(), save_model_path)
    if save_agent_path is not None:
        from agmc_onnx.search.transfer import save_agent

        save_agent(result.agent, save_agent_path)
    search = result.plan.metadata["search"]
    if result.latency_fit is not None:
        click.echo(
            f"latency on {config.target}: predicted {search['predicted_latency_ms']:.3f} ms, "
            f"measured {search['measured_latency_ms']:.3f} ms (original {result.latency_fit.original_ms:.3f} ms)"
        )
    click.echo(_summary(config.policy, result, search["reward_images"], output, task))


def _search_config(flops, latency, episodes, warmup, agent, **same_names):
    """The SearchConfig of the options; the library's budget check becomes a usage error."""
    from agmc_onnx.errors import PreconditionError
    from agmc_onnx.search import DDPGConfig, SearchConfig

    try:
        return SearchConfig(
            n_episodes=episodes,
            flops_keep_ratio=flops,
            latency_keep_ratio=latency,
            ddpg=DDPGConfig(warmup_episodes=warmup),
            agent=str(agent) if agent is not None else None,
            **same_names,
        )
    except PreconditionError as exc:
        hints = {"budget": " (--flops F or --latency L)", "episode": " (--episodes 0 needs --agent)"}
        hint = next((text for word, text in hints.items() if word in str(exc)), "")
        raise click.UsageError(f"{exc}{hint}") from None


def _reward_data(model, data_path: Path, task: str, preprocessing: Preprocessing, reward_size: int, seed: int):
    """(reward set, spec, task): labelled images for accuracy, else a ``Feeder`` of any inputs for fidelity."""
    from agmc_onnx.data import load_splits
    from agmc_onnx.data.feeds import Feeder, model_inputs
    from agmc_onnx.errors import DataError

    inputs = model_inputs(model)
    names = [info.name for info in inputs]

    def load(spec):
        splits = load_splits(
            data_path, spec, reward_size=reward_size, seed=seed, cache_dir=preprocessing.cache_dir, input_names=names
        )
        return splits.reward

    reward_set, spec = preprocessing.spec_for(model, load)
    if task == "auto":
        task = "accuracy" if reward_set.labelled else "fidelity"
    if task == "accuracy" and not reward_set.labelled:
        raise DataError(f"{data_path} has no labels; --task accuracy needs them (use --task fidelity)")
    return (reward_set if task == "accuracy" else Feeder(reward_set, inputs, spec)), spec, task


def _summary(policy: str, result, n_images: int, output: Path, task: str) -> str:
    best = result.records[result.best_episode]
    reward = "top-1" if task == "accuracy" else "fidelity"
    return (
        f"{policy}: best reward {reward} {100 * result.best_reward:.2f} % on {n_images} held-out train inputs "
        f"(episode {result.best_episode + 1}/{len(result.records)}), "
        f"MACs kept {100 * best.macs_kept_fraction:.1f} %, "
        f"{result.n_evaluations} evaluations, {result.seconds:.0f} s; plan written to {output}"
    )
