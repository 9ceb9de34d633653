"""Search policies behind one interface (``--policy``): agmc, amc, uniform, random.

A policy proposes one action per step and learns from finished episodes. ``agmc`` and ``amc`` share
the same DDPG agent and differ only in the state encoder (learned graph embedding vs AMC's rule-based
features), so any difference between them is the embedding's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from agmc_onnx.analysis import ModelAnalysis
from agmc_onnx.errors import PreconditionError
from agmc_onnx.groups.find import ChannelGroup
from agmc_onnx.search import POLICY_NAMES
from agmc_onnx.search.agent import DDPGAgent, DDPGConfig, truncated_normal
from agmc_onnx.search.budget import uniform_keep_ratio
from agmc_onnx.search.encoder import EncoderConfig
from agmc_onnx.search.env import PruningEnv
from agmc_onnx.search.features import build_graph_features, rule_features
from agmc_onnx.search.imitation import demonstration
from agmc_onnx.search.states import GraphState, RuleState
from agmc_onnx.search.transfer import apply_snapshot

__all__ = [
    "SearchPolicy",
    "DDPGPolicy",
    "UniformPolicy",
    "RandomPolicy",
    "POLICY_NAMES",
    "POLICIES",
    "make_policy",
    "Transition",
]

Transition = tuple[int, np.ndarray, float]  # (step, dynamic features before the step, effective action)


class SearchPolicy(Protocol):
    name: str
    max_episodes: int | None  # None: as many as asked

    def begin_episode(self, episode: int) -> None: ...
    def act(self, step: int, dynamic: np.ndarray, episode: int) -> float: ...
    def observe(self, episode: int, transitions: Sequence[Transition], reward: float) -> dict[str, float]: ...
    def imitate(self, env: PruningEnv, keep_counts: Sequence[int], reward: float) -> None: ...
    def exploration(self, episode: int) -> float: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


class DDPGPolicy:
    """DDPG with random warm-up episodes, then truncated-normal exploration with decaying σ."""

    max_episodes = None

    def __init__(
        self,
        name: str,
        state_encoder: torch.nn.Module,
        n_groups: int,
        config: DDPGConfig,
        seed: int,
        snapshot: dict | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.rng = np.random.default_rng(seed)
        # A transferred agent brings its trained encoder: pre-training it on this graph would overwrite it.
        self.encoder_history = state_encoder.pretrain(seed) if snapshot is None else []
        self.agent = DDPGAgent(state_encoder, n_groups, config, seed)
        if snapshot is not None:
            apply_snapshot(self, snapshot)
        self.frozen = False  # True: act with the actor's mean, learn nothing (a transferred policy as is)
        self.transferred = snapshot is not None
        # The best episodes of the networks the saved agent searched (``imitation``).
        self.carried: list[dict] = list(snapshot.get("demonstrations", [])) if snapshot is not None else []
        self.imitation: dict | None = None  # this search's best plan so far, when the actor imitates it
        self._table: torch.Tensor | None = None

    def exploration(self, episode: int) -> float:
        if self.frozen:
            return 0.0
        if episode < self.config.warmup_episodes:
            return 1.0
        # A transferred agent's first episode is its policy as is, so the search never scores worse than that.
        return 0.0 if self.transferred and episode == 0 else self.config.sigma(episode)

    def begin_episode(self, episode: int) -> None:
        self._table = self.agent.static_table()

    def act(self, step: int, dynamic: np.ndarray, episode: int) -> float:
        if not self.frozen and episode < self.config.warmup_episodes:
            return float(self.rng.uniform())
        mean = self.agent.act(self._table, step, dynamic)
        return truncated_normal(mean, self.exploration(episode), self.rng)

    def observe(self, episode: int, transitions: Sequence[Transition], reward: float) -> dict[str, float]:
        if self.frozen:
            return {}
        last = len(transitions) - 1
        for i, (step, dynamic, action) in enumerate(transitions):
            next_step, next_dynamic = (
                (transitions[i + 1][0], transitions[i + 1][1]) if i < last else (step, dynamic)
            )
            # AMC: every step of the episode is credited with the episode's final reward.
            self.agent.buffer.add(
                group=step,
                dynamic=dynamic,
                action=action,
                reward=reward,
                next_group=next_step,
                next_dynamic=next_dynamic,
                not_done=float(i < last),
            )
        if episode < self.config.warmup_episodes:
            return {}
        losses = [self.agent.update(self.rng, self.imitation) for _ in transitions]
        return {key: float(np.mean([loss[key] for loss in losses])) for key in losses[0]}

    def imitate(self, env: PruningEnv, keep_counts: Sequence[int], reward: float) -> None:
        """A new best plan: with an imitation weight, the actor's updates pull it towards this plan."""
        if self.config.imitation_weight:
            self.imitation = demonstration(env, keep_counts, self.agent.encoder.static_inputs(), reward)

    def state_dict(self) -> dict:
        return {"agent": self.agent.state_dict(), "rng": self.rng.bit_generator.state, "imitation": self.imitation}

    def load_state_dict(self, state: dict) -> None:
        self.agent.load_state_dict(state["agent"])
        self.rng.bit_generator.state = state["rng"]
        self.imitation = state.get("imitation")  # checkpoints of earlier versions kept none


class UniformPolicy:
    """One keep ratio for every group, the largest that meets the budget (bisection); one evaluation."""

    max_episodes = 1

    def __init__(self, env: PruningEnv) -> None:
        self.name = "uniform"
        self.keep_ratio, self._counts = uniform_keep_ratio(env.wall)
        self.env = env

    def exploration(self, episode: int) -> float:
        return 0.0

    def begin_episode(self, episode: int) -> None:
        return None

    def act(self, step: int, dynamic: np.ndarray, episode: int) -> float:
        return self.env.action_of(int(self._counts[step]), step)  # at the step: budget-relative actions need it

    def observe(self, episode: int, transitions: Sequence[Transition], reward: float) -> dict[str, float]:
        return {}

    def imitate(self, env: PruningEnv, keep_counts: Sequence[int], reward: float) -> None:
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


class RandomPolicy:
    """Uniform random actions through the same action wall, every episode."""

    max_episodes = None

    def __init__(self, seed: int) -> None:
        self.name = "random"
        self.rng = np.random.default_rng(seed)

    def exploration(self, episode: int) -> float:
        return 1.0

    def begin_episode(self, episode: int) -> None:
        return None

    def act(self, step: int, dynamic: np.ndarray, episode: int) -> float:
        return float(self.rng.uniform())

    def observe(self, episode: int, transitions: Sequence[Transition], reward: float) -> dict[str, float]:
        return {}

    def imitate(self, env: PruningEnv, keep_counts: Sequence[int], reward: float) -> None:
        return None

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


def _ddpg_policy(name, analysis, groups, env, seed, ddpg, encoder, snapshot=None) -> DDPGPolicy:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "agmc":
            state_encoder = GraphState(build_graph_features(analysis, groups), encoder)
        else:
            state_encoder = RuleState(torch.as_tensor(rule_features(analysis, groups)))
    return DDPGPolicy(name, state_encoder, len(groups), ddpg, seed, snapshot)


def _untrained(factory):
    """Policies without an agent: a saved agent cannot be given to them."""

    def build(name, analysis, groups, env, seed, ddpg, encoder, snapshot=None):
        if snapshot is not None:
            raise PreconditionError(f"the {name} policy has no agent to load; a saved agent needs agmc or amc")
        return factory(name, analysis, groups, env, seed, ddpg, encoder)

    return build


# The policy registry. Its names are ``POLICY_NAMES`` (kept in the package's light ``__init__`` so the CLI's
# choices need no torch); a test keeps the two equal.
POLICIES = {
    "agmc": _ddpg_policy,
    "amc": _ddpg_policy,
    "uniform": _untrained(lambda name, analysis, groups, env, seed, ddpg, encoder: UniformPolicy(env)),
    "random": _untrained(lambda name, analysis, groups, env, seed, ddpg, encoder: RandomPolicy(seed)),
}


def make_policy(
    name: str,
    analysis: ModelAnalysis,
    groups: Sequence[ChannelGroup],
    env: PruningEnv,
    seed: int,
    ddpg: DDPGConfig,
    encoder: EncoderConfig = EncoderConfig(),
    snapshot: dict | None = None,
) -> SearchPolicy:
    """The named policy; ``snapshot`` (``transfer.load_agent``) starts agmc or amc from a saved agent."""
    factory = POLICIES.get(name)
    if factory is None:
        raise PreconditionError(f"unknown policy '{name}'; choose one of {', '.join(POLICY_NAMES)}")
    return factory(name, analysis, groups, env, seed, ddpg, encoder, snapshot)
