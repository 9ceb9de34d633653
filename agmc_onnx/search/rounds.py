"""Rounds of the search: the policy proposes K episodes, their rewards are evaluated together, then the
policy observes them one by one in episode order (replay and updates as with one episode per round).

With K = 1 a round is exactly one episode of the sequential search. The episodes of a round that are
evaluated but not observed yet are ``pending``; they are checkpointed with the policy, so a search
interrupted in the middle of a round resumes by observing them, not by proposing them again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from agmc_onnx.search.budget import CostModel
from agmc_onnx.search.env import EpisodeResult, PruningEnv
from agmc_onnx.search.evaluation import Evaluator
from agmc_onnx.search.log import EpisodeRecord
from agmc_onnx.search.policies import SearchPolicy, Transition
from agmc_onnx.search.reward import RewardSample

__all__ = ["Proposal", "SearchState", "propose_round", "observe"]


@dataclass(frozen=True)
class Proposal:
    """One played episode: what the policy did, the corrected outcome, and (once evaluated) its reward."""

    episode: int
    transitions: tuple[Transition, ...]
    outcome: EpisodeResult
    seconds: float  # acting, plus this episode's share of the round's evaluation wall time
    sample: RewardSample | None = None


@dataclass
class SearchState:
    """Mutable loop state, checkpointed after every observed episode."""

    records: list = field(default_factory=list)
    best_reward: float = -np.inf
    best_counts: tuple = ()
    best_episode: int = -1
    n_evaluations: int = 0
    pending: list = field(default_factory=list)  # evaluated proposals of the current round, not yet observed


def _play(env: PruningEnv, policy: SearchPolicy, episode: int) -> Proposal:
    started = time.perf_counter()
    env.reset()
    policy.begin_episode(episode)
    transitions = []
    for step in range(env.n_steps):
        dynamic = env.dynamic()
        action = policy.act(step, dynamic, episode)
        transitions.append((step, dynamic, env.step(action)))
    outcome = env.finish()
    if outcome.corrected:
        transitions = [(s, d, a) for (s, d, _), a in zip(transitions, outcome.actions)]
    return Proposal(episode, tuple(transitions), outcome, time.perf_counter() - started)


def propose_round(
    env: PruningEnv, policy: SearchPolicy, evaluator: Evaluator, first_episode: int, size: int
) -> list[Proposal]:
    """``size`` episodes from the policy as it is now, with their rewards."""
    proposals = [_play(env, policy, first_episode + k) for k in range(size)]
    started = time.perf_counter()
    samples = evaluator.evaluate([env.selection(p.outcome.keep_counts) for p in proposals], first_episode)
    share = (time.perf_counter() - started) / size
    return [replace(p, sample=s, seconds=p.seconds + share) for p, s in zip(proposals, samples)]


def observe(
    env: PruningEnv, policy: SearchPolicy, proposal: Proposal, state: SearchState, macs_cost: CostModel, fit
) -> EpisodeRecord:
    """The policy learns from one evaluated episode; the best so far and the record follow."""
    started = time.perf_counter()
    sample, outcome, episode = proposal.sample, proposal.outcome, proposal.episode
    state.n_evaluations += int(not sample.cached)
    if sample.accuracy > state.best_reward:
        state.best_reward, state.best_counts, state.best_episode = sample.accuracy, outcome.keep_counts, episode
        policy.imitate(env, outcome.keep_counts, sample.accuracy)
    losses = policy.observe(episode, list(proposal.transitions), sample.accuracy)
    fractions = env.wall.fractions(np.array(outcome.keep_counts))
    return EpisodeRecord(
        episode=episode,
        policy=policy.name,
        keep_ratios=tuple(c / g.n_units for c, g in zip(outcome.keep_counts, env.groups)),
        actions=outcome.actions,
        macs_kept_fraction=macs_cost.cost(fractions) / macs_cost.full_cost,
        cost_kept_fraction=outcome.cost_fraction,
        predicted_latency_ms=env.wall.cost(np.array(outcome.keep_counts)) if fit else None,
        reward=sample.accuracy,
        best_reward=state.best_reward,
        cached=sample.cached,
        corrected=outcome.corrected,
        exploration_sigma=policy.exploration(episode),
        eval_seconds=sample.seconds,
        episode_seconds=proposal.seconds + time.perf_counter() - started,
        losses=losses,
    )
