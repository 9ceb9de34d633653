"""The search loop: episodes of a policy in the pruning environment, logged, checkpointed, resumable."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from agmc_onnx.analysis import ModelAnalysis
from agmc_onnx.errors import PreconditionError
from agmc_onnx.importance import Importance, channel_scores
from agmc_onnx.plan import PruningPlan
from agmc_onnx.progress import ProgressFn, report
from agmc_onnx.search.agent import (
    SCRATCH_ENCODER_LR,
    SCRATCH_SIGMA,
    TRANSFER_IMITATION_WEIGHT,
    TRANSFER_SIGMA,
    DDPGConfig,
    scaled_warmup,
)
from agmc_onnx.search.budget import ActionWall, CostModel, macs_wall, one_budget, uniform_keep_ratio
from agmc_onnx.search.depth_budget import fit_removal_savings, searchable_removals
from agmc_onnx.search.encoder import EncoderConfig
from agmc_onnx.search.env import PruningEnv
from agmc_onnx.search.evaluation import make_evaluator
from agmc_onnx.search.features import search_order
from agmc_onnx.search.imitation import demonstration
from agmc_onnx.search.latency_model import LatencyFit, fit_latency_model
from agmc_onnx.search.log import EpisodeProgress, EpisodeRecord, RunDirectory
from agmc_onnx.search.policies import make_policy
from agmc_onnx.search.reward import AccuracyReward, FidelityReward, RewardFn
from agmc_onnx.search.rounds import SearchState, observe, propose_round
from agmc_onnx.search.table_budget import latency_wall, table_budget
from agmc_onnx.search.transfer import agent_snapshot, load_agent

__all__ = ["SearchConfig", "SearchResult", "run_search", "ACTION_CENTERS", "BUDGET_MODES"]

ACTION_CENTERS = ("none", "uniform", "budget-relative")
BUDGET_MODES = ("wall", "rescale")

_Progress = SearchState  # the name checkpoints written before rounds existed unpickle through


@dataclass(frozen=True)
class SearchConfig:
    """One budget: ``flops_keep_ratio`` (kept fraction of MACs) or ``latency_keep_ratio`` on ``target``."""

    policy: str = "agmc"
    n_episodes: int = 100
    flops_keep_ratio: float | None = 0.5
    latency_keep_ratio: float | None = None
    target: str = "mobile-cpu"
    latency_seconds: float = 1.0  # timing per measured variant when fitting the latency model
    round_to: int = 8
    lower_bound: float = 0.2
    # "uniform": action 0.5 means the largest uniform keep ratio that meets the budget, so exploration
    # and an untrained actor start from that feasible prior instead of from keep ratio 0.6. "budget-relative":
    # action 0.5 means the uniform keep ratio that meets the budget left for this and the later groups.
    action_center: str = "none"
    # How an episode meets the budget: "wall" clips each step so the budget stays reachable (AMC); "rescale"
    # lets the steps run free and multiplies every keep ratio by one factor at the end (``PruningEnv``).
    budget_mode: str = "wall"
    importance: str = "l1"
    # depth: a removable group's action below this deletes its residual branch (None: width only)
    depth_threshold: float | None = None
    seed: int = 0
    ddpg: DDPGConfig = field(default_factory=DDPGConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    # Latency budgets: "table" predicts from per-layer tables measured on the target (kept counts on each
    # group's fast steps); "fit" from a MACs-weighted fit of a few uniformly pruned variants.
    latency_model: str = "table"
    latency_precision: str = "fp32"  # the form that ships: "fp32", "int8-qoperator" or "int8-qdq" (table only)
    table_cache_dir: str | None = None
    # Rewards evaluated in parallel: ``workers`` Ray actors (1 and no address: in this process, no Ray);
    # ``episodes_per_round`` (K, default: workers) episodes are proposed before the policy observes them.
    workers: int = 1
    episodes_per_round: int | None = None
    ray_address: str | None = None
    # A saved agent (``transfer.save_agent``) to start from: no encoder pre-training, no warm-up unless
    # asked for; with ``n_episodes`` 0 its policy is applied as is (one episode, no exploration, no update).
    agent: str | None = None

    def __post_init__(self) -> None:
        one_budget(self.flops_keep_ratio, self.latency_keep_ratio)
        # The one place these DDPG settings are decided: a search from a saved agent starts from its policy (no
        # warm-up, encoder fixed, imitating its best plan, exploring near it), one from scratch as AMC and AGMC do.
        transferred = self.agent is not None
        defaults = {
            "warmup_episodes": 0 if transferred else scaled_warmup(self.n_episodes),
            "imitation_weight": TRANSFER_IMITATION_WEIGHT if transferred else 0.0,
            "encoder_lr": 0.0 if transferred else SCRATCH_ENCODER_LR,
            "sigma_start": TRANSFER_SIGMA if transferred else SCRATCH_SIGMA,
            "sigma_wide": SCRATCH_SIGMA if transferred else 0.0,
        }
        unset = {name: value for name, value in defaults.items() if getattr(self.ddpg, name) is None}
        if unset:
            object.__setattr__(self, "ddpg", dataclasses.replace(self.ddpg, **unset))
        if self.workers < 1 or (self.episodes_per_round is not None and self.episodes_per_round < 1):
            raise PreconditionError("workers and episodes per round must be at least 1")
        if self.episodes_per_round is None:
            object.__setattr__(self, "episodes_per_round", self.workers)
        if not 0.0 < self.lower_bound <= 1.0:
            raise PreconditionError(f"lower bound {self.lower_bound} must be a keep ratio in (0, 1]")
        if self.action_center not in ACTION_CENTERS:
            raise PreconditionError(
                f"action centre '{self.action_center}' is unknown; use one of {', '.join(ACTION_CENTERS)}"
            )
        if self.budget_mode not in BUDGET_MODES:
            raise PreconditionError(
                f"budget mode '{self.budget_mode}' is unknown; use one of {', '.join(BUDGET_MODES)}"
            )
        if self.budget_mode == "rescale" and self.action_center == "budget-relative":
            raise PreconditionError("budget-relative actions follow the wall step by step; use --budget-mode wall")
        if self.depth_threshold is not None and not 0.0 < self.depth_threshold < 1.0:
            raise PreconditionError(
                f"depth threshold {self.depth_threshold} must lie in (0, 1): the share of the action range "
                "that deletes a removable branch"
            )
        if self.n_episodes < (0 if self.agent is not None else 1):
            raise PreconditionError(
                f"the search needs at least 1 episode, got {self.n_episodes} (0 applies a saved agent as is)"
            )
        if self.latency_model not in ("table", "fit"):
            raise PreconditionError(f"latency model '{self.latency_model}' is unknown; use 'table' or 'fit'")
        if self.latency_precision != "fp32" and self.latency_model != "table":
            raise PreconditionError("an INT8 latency budget needs the measured tables (latency_model 'table')")

    @property
    def budget(self) -> tuple[str, float]:
        """``("flops" | "latency", kept fraction)``."""
        return one_budget(self.flops_keep_ratio, self.latency_keep_ratio)


@dataclass(frozen=True)
class SearchResult:
    plan: PruningPlan
    best_reward: float
    best_episode: int
    records: tuple[EpisodeRecord, ...]
    encoder_loss: tuple[float, ...]  # auto-encoder pre-training, one value per epoch (agmc only)
    latency_fit: LatencyFit | None
    n_evaluations: int  # evaluations that were not served from the cache
    seconds: float
    # Builds the agent's transferable snapshot (agmc, amc) on first use of ``agent``: fitting its actor to the
    # demonstrations takes a second or two that a search whose agent is not saved should not pay.
    agent_factory: Callable[[], dict | None] | None = field(default=None, compare=False, repr=False)
    # The reward that scored the episodes (``search_model`` sets it); it rebuilds the best model.
    reward: AccuracyReward | FidelityReward | None = field(default=None, compare=False, repr=False)

    @functools.cached_property
    def agent(self) -> dict | None:
        """What ``transfer.save_agent`` writes (agmc, amc); None for policies without an agent."""
        return self.agent_factory() if self.agent_factory is not None else None

    def best_model(self) -> onnx.ModelProto:
        """The best plan's pruned model, as the reward scored it (BatchNormalization re-estimated if it was)."""
        if self.reward is None:
            raise PreconditionError("this search result carries no reward function to rebuild its model")
        return self.reward.pruned_model(self.reward.selection_of(self.plan))


def _identity(analysis: ModelAnalysis, config: SearchConfig) -> dict:
    fields = dataclasses.asdict(config)
    fields.pop("n_episodes")  # a resumed run may be extended
    for where in ("workers", "ray_address"):  # ... and resumed on other workers: the log does not depend on them
        fields.pop(where)
    if fields["episodes_per_round"] == 1:  # one episode per round is the sequential search of earlier runs
        fields.pop("episodes_per_round")
    if fields["budget_mode"] == "wall":  # runs from before the option resume unchanged
        fields.pop("budget_mode")
    for name in ("imitation_weight", "sigma_wide"):  # ... as do runs from before these settings
        if not fields["ddpg"][name]:
            fields["ddpg"].pop(name)
    fields["model_sha1"] = hashlib.sha1(analysis.model.SerializeToString()).hexdigest()
    return fields


def _budget(analysis, groups, config, checkpoint, scores) -> tuple[ActionWall, LatencyFit | None]:
    """The action wall of the configured budget; ``scores`` rank units wherever their costs differ."""
    removable = searchable_removals(analysis, groups) if config.depth_threshold is not None else frozenset()
    if config.flops_keep_ratio is not None:
        wall = macs_wall(analysis, groups, config.flops_keep_ratio, config.lower_bound, config.round_to, removable,
                         scores)
        return wall, None
    if config.latency_model == "table":
        if checkpoint:  # a resumed run reuses the stored tables: re-measuring would move the budget
            fit = checkpoint["latency_fit"]
            target_ms = config.latency_keep_ratio * fit.original_ms
            return latency_wall(groups, fit.cost_model, target_ms, config.lower_bound, config.round_to, removable), fit
        return table_budget(analysis, groups, config.latency_keep_ratio, config.target, config.latency_precision,
                            config.lower_bound, config.round_to, config.table_cache_dir, removable, scores)
    # A resumed run reuses the stored fit: re-measuring would change the budget mid-search.
    if checkpoint:
        fit = checkpoint["latency_fit"]
    else:
        fit = fit_latency_model(analysis, groups, config.target, config.round_to, min_seconds=config.latency_seconds,
                                scores=scores)
        fit = fit_removal_savings(analysis, fit, removable, config.latency_seconds)
    target_ms = config.latency_keep_ratio * fit.original_ms
    return ActionWall(groups, fit.cost_model, target_ms, config.lower_bound, config.round_to, removable), fit


def run_search(
    analysis: ModelAnalysis,
    reward_fn: RewardFn,
    config: SearchConfig,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: ProgressFn | None = None,
    importance: Importance | None = None,
) -> SearchResult:
    """Search keep ratios of the prunable groups under the budget; the best episode becomes the plan."""
    started = time.perf_counter()
    groups = search_order(analysis)
    if not groups:
        raise PreconditionError("the model has no prunable channel group; there is nothing to search")
    directory = RunDirectory(run_dir) if run_dir is not None else None
    checkpoint = directory.start(_identity(analysis, config), resume) if directory else None
    scores = channel_scores(analysis, importance or config.importance)
    wall, fit = _budget(analysis, groups, config, checkpoint, scores)
    center = uniform_keep_ratio(wall)[0] if config.action_center == "uniform" else None
    env = PruningEnv(
        groups, wall, config.importance, center, config.depth_threshold, analysis.depth, scores=scores,
        budget_relative=config.action_center == "budget-relative", rescale=config.budget_mode == "rescale",
    )
    snapshot = load_agent(config.agent) if config.agent is not None else None
    policy = make_policy(config.policy, analysis, groups, env, config.seed, config.ddpg, config.encoder, snapshot)
    if config.n_episodes == 0:
        policy.frozen = True
    encoder_loss = tuple(getattr(policy, "encoder_history", ()))
    state = _restore(checkpoint, policy, directory, reward_fn) if checkpoint else SearchState()
    requested = max(config.n_episodes, 1)  # 0: the one episode of a saved policy applied as is
    n_episodes = min(requested, policy.max_episodes or requested)
    evaluator = make_evaluator(reward_fn, config.workers, config.ray_address, progress)
    try:
        _loop(env, policy, evaluator, state, n_episodes, config.episodes_per_round, directory, progress, fit)
    finally:
        evaluator.close()
    metadata = _plan_metadata(config, state, groups, fit)
    return SearchResult(
        plan=env.plan(state.best_counts, metadata),
        best_reward=state.best_reward,
        best_episode=state.best_episode,
        records=tuple(state.records),
        encoder_loss=encoder_loss,
        latency_fit=fit,
        n_evaluations=state.n_evaluations,
        seconds=time.perf_counter() - started,
        agent_factory=functools.partial(_agent_of, policy, env, state),
    )


def _agent_of(policy, env: PruningEnv, state: SearchState) -> dict | None:
    """The saved-agent snapshot of a learning policy, its own demonstration the best plan of this search."""
    if not hasattr(policy, "agent"):
        return None
    own = None
    if not policy.frozen and state.best_episode >= 0:
        own = demonstration(env, state.best_counts, policy.agent.encoder.static_inputs(), state.best_reward)
    return agent_snapshot(policy, own)


def _restore(checkpoint: dict, policy, directory: RunDirectory, reward_fn) -> SearchState:
    """The loop state of a checkpoint, with the policy, the log and the reward cache put back."""
    policy.load_state_dict(checkpoint["policy"])
    state = checkpoint["progress"]
    state.records = [EpisodeRecord.from_dict(r) for r in state.records]
    state.pending = list(getattr(state, "pending", []))  # checkpoints of earlier versions have none
    directory.rewrite_log(state.records)
    getattr(reward_fn, "cache", {}).update(checkpoint.get("reward_cache", {}))
    return state


def _loop(env, policy, evaluator, state: SearchState, n_episodes, per_round, directory, progress, fit) -> None:
    """Rounds until ``n_episodes`` are logged; a checkpoint after every observed episode."""
    macs_cost = CostModel.of_macs(env.wall.cost_model.macs)
    while len(state.records) < n_episodes:
        if not state.pending:
            first = len(state.records)
            state.pending = propose_round(env, policy, evaluator, first, min(per_round, n_episodes - first))
        record = observe(env, policy, state.pending.pop(0), state, macs_cost, fit)
        state.records.append(record)
        if directory:
            directory.append(record)
            directory.save_checkpoint(_checkpoint(policy, state, evaluator, fit))
        report(progress, EpisodeProgress(record, n_episodes))


def _checkpoint(policy, state: SearchState, evaluator, fit) -> dict:
    stored = dataclasses.replace(state, records=[dataclasses.asdict(r) for r in state.records])
    return {
        "policy": policy.state_dict(),
        "progress": stored,
        "reward_cache": dict(getattr(evaluator, "cache", None) or {}),
        "latency_fit": fit,
    }


def _plan_metadata(config: SearchConfig, state: SearchState, groups, fit) -> dict:
    best = state.records[state.best_episode] if state.best_episode >= 0 else None
    return {
        "search": {
            "policy": config.policy,
            "episodes": len(state.records),
            "best_episode": state.best_episode,
            "best_reward_top1": state.best_reward,
            "macs_kept_fraction": best.macs_kept_fraction if best else None,
            "flops_keep_ratio": config.flops_keep_ratio,
            "latency_keep_ratio": config.latency_keep_ratio,
            "target": config.target if fit else None,
            "predicted_latency_ms": best.predicted_latency_ms if best else None,
            "original_latency_ms": fit.original_ms if fit else None,
            "lower_bound": config.lower_bound,
            "depth_threshold": config.depth_threshold,
            "budget_mode": config.budget_mode,
            "seed": config.seed,
            "group_names": {g.id: g.name for g in groups},
        }
    }
