"""DDPG (AMC's hyperparameters) over a trainable or fixed state encoder.

Transitions store (group index, dynamic features, action, reward), never a frozen state vector, so
every update re-encodes states with the current encoder and the critic's gradient reaches the GNN
(the published AGMC code stored NumPy states, leaving its encoder untrained).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DDPGConfig", "DDPGAgent", "ReplayBuffer", "truncated_normal", "TRANSFER_IMITATION_WEIGHT", "SCRATCH_ENCODER_LR",
    "SCRATCH_SIGMA", "TRANSFER_SIGMA",
]

# A search from a saved agent: its first DDPG updates, from a critic fitted to other networks and a handful of
# episodes, drag the actor away from the plan it transferred (one-off runs on ResNet-56 from the seed-0 agent of
# benchmarks/results/search_transfer_wall300.runs: the plan as is scored 52 %, the next 19 episodes 14-39 %, with
# exploration σ 0.1 as with 0.5). With the encoder fixed, imitating the best plan so far holds the actor there
# (tests/search/test_transfer.py).
TRANSFER_IMITATION_WEIGHT = 10.0
SCRATCH_ENCODER_LR = 1e-3
SCRATCH_SIGMA = 0.5
# Near the transferred plan rather than AMC's wide exploration. One-off runs of 20 episodes from the same agents:
# ResNet-20 best reward 59.3 % with σ 0.5, 64.3 % with σ 0.2 (ResNet-56 52.0 / 52.7 %); MobileNetV2, whose
# transferred plan is poor, did better with σ 0.5 (test 77.3 vs 73.2 %). So a search from a saved agent alternates
# the two (``DDPGConfig.sigma_wide``): benchmarks/results/search_transfer_wall300*.md, σ 0.2 alone in their
# "previous protocol" rows.
TRANSFER_SIGMA = 0.2


@dataclass(frozen=True)
class DDPGConfig:
    hidden_dim: int = 300
    actor_lr: float = 1e-4
    critic_lr: float = 1e-3
    # None: resolved by SearchConfig (1e-3 from scratch; 0 from a saved agent, whose actor was fitted to the
    # transferred encoder's states: the critic's first updates on a new network would move them under it).
    encoder_lr: float | None = None
    tau: float = 0.01
    discount: float = 1.0
    batch_size: int = 64
    warmup_episodes: int | None = None  # None: scaled_warmup(episodes), resolved by SearchConfig
    # None: resolved by SearchConfig (AMC's 0.5 from scratch; ``TRANSFER_SIGMA`` from a saved agent, a local search
    # around the transferred plan)
    sigma_start: float | None = None
    # σ of every other episode after warm-up (0: every episode explores with ``sigma_start``); None: resolved by
    # SearchConfig (0 from scratch, ``SCRATCH_SIGMA`` from a saved agent, whose plan may be poor on this network)
    sigma_wide: float | None = None
    sigma_decay: float = 0.95
    baseline_alpha: float = 0.5
    buffer_episodes: int = 100  # replay capacity = buffer_episodes × #groups (AMC)
    reconstruction_weight: float = 0.1
    # Weight of the actor's regression onto the search's best plan so far (self-imitation); None: resolved by
    # SearchConfig (0 from scratch, ``TRANSFER_IMITATION_WEIGHT`` from a saved agent).
    imitation_weight: float | None = None

    def sigma(self, episode: int) -> float:
        """Exploration σ of an episode after warm-up: σ₀·decay^(episode − warm-up), σ₀ alternating between
        ``sigma_start`` and ``sigma_wide`` when the latter is set."""
        after = max(0, episode - self.warmup_episodes)
        wide = bool(self.sigma_wide) and after % 2 == 1
        return (self.sigma_wide if wide else self.sigma_start) * self.sigma_decay ** after


def scaled_warmup(n_episodes: int) -> int:
    """AGMC's 25 random warm-up episodes, scaled down for short searches so the agent acts in most of them."""
    return max(1, min(25, n_episodes // 4))


def _mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, out_dim),
    )


def truncated_normal(
    mean: float, sigma: float, rng: np.random.Generator, low: float = 0.0, high: float = 1.0
) -> float:
    """One sample of N(mean, σ²) restricted to [low, high] (rejection; clipped after 100 misses)."""
    if sigma <= 0:
        return float(np.clip(mean, low, high))
    for _ in range(100):
        sample = rng.normal(mean, sigma)
        if low <= sample <= high:
            return float(sample)
    return float(np.clip(mean, low, high))


class ReplayBuffer:
    """Fixed-capacity ring buffer of transitions, sampled with the caller's seeded generator."""

    def __init__(self, capacity: int, n_dynamic: int) -> None:
        self.capacity = capacity
        self.arrays = {
            "group": np.zeros(capacity, np.int64),
            "dynamic": np.zeros((capacity, n_dynamic), np.float32),
            "action": np.zeros(capacity, np.float32),
            "reward": np.zeros(capacity, np.float32),
            "next_group": np.zeros(capacity, np.int64),
            "next_dynamic": np.zeros((capacity, n_dynamic), np.float32),
            "not_done": np.zeros(capacity, np.float32),
        }
        self.size = 0
        self.cursor = 0

    def add(self, **transition: object) -> None:
        for key, array in self.arrays.items():
            array[self.cursor] = transition[key]
        self.cursor = (self.cursor + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        rows = rng.integers(0, self.size, size=batch_size)
        return {key: torch.from_numpy(array[rows]) for key, array in self.arrays.items()}

    def state_dict(self) -> dict:
        return {
            "arrays": {k: v.copy() for k, v in self.arrays.items()},
            "size": self.size,
            "cursor": self.cursor,
        }

    def load_state_dict(self, state: dict) -> None:
        self.arrays = {k: np.array(v) for k, v in state["arrays"].items()}
        self.size, self.cursor = int(state["size"]), int(state["cursor"])


class DDPGAgent:
    """Actor and critic MLPs (300-300), target copies soft-updated with τ, moving-average reward baseline."""

    def __init__(self, state_encoder: nn.Module, n_groups: int, config: DDPGConfig, seed: int) -> None:
        self.config = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.actor = nn.Sequential(_mlp(state_encoder.state_dim, config.hidden_dim, 1), nn.Sigmoid())
            self.critic = _mlp(state_encoder.state_dim + 1, config.hidden_dim, 1)
        self.encoder = state_encoder
        self.target_actor = copy.deepcopy(self.actor)
        self.target_critic = copy.deepcopy(self.critic)
        self.target_encoder = copy.deepcopy(state_encoder)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)
        critic_groups = [{"params": list(self.critic.parameters()), "lr": config.critic_lr}]
        if state_encoder.trainable and config.encoder_lr:
            critic_groups.append({"params": list(state_encoder.parameters()), "lr": config.encoder_lr})
        self.critic_optimizer = torch.optim.Adam(critic_groups)
        self.buffer = ReplayBuffer(config.buffer_episodes * n_groups, 3)
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.baseline: float | None = None

    @torch.no_grad()
    def static_table(self) -> torch.Tensor:
        """The encoder's per-group static states, computed once per episode for acting."""
        return self.encoder.static_table()

    @torch.no_grad()
    def act(self, table: torch.Tensor, step: int, dynamic: np.ndarray) -> float:
        state = torch.cat([table[step], torch.as_tensor(dynamic, dtype=torch.float32)]).unsqueeze(0)
        return float(self.actor(state)[0, 0])

    def update(self, rng: np.random.Generator, imitation: dict | None = None) -> dict[str, float]:
        """One gradient step of critic (+ encoder) and actor on a sampled batch; then soft target updates.
        ``imitation`` (``imitation.demonstration``): the actor is also pulled towards its actions."""
        cfg = self.config
        batch = self.buffer.sample(cfg.batch_size, rng)
        reward = batch["reward"]
        mean_reward = float(reward.mean())
        # AMC's baseline: a moving average of batch rewards, subtracted to reduce the critic's variance.
        self.baseline = (
            mean_reward
            if self.baseline is None
            else self.baseline + cfg.baseline_alpha * (mean_reward - self.baseline)
        )
        reward = reward - self.baseline
        with torch.no_grad():
            next_state = self.target_encoder(batch["next_group"], batch["next_dynamic"])
            next_q = self.target_critic(torch.cat([next_state, self.target_actor(next_state)], dim=1))[:, 0]
            target_q = reward + cfg.discount * batch["not_done"] * next_q
        state = self.encoder(batch["group"], batch["dynamic"])
        q = self.critic(torch.cat([state, batch["action"][:, None]], dim=1))[:, 0]
        critic_loss = F.mse_loss(q, target_q)
        reconstruction = self.encoder.auxiliary_loss(self.generator)
        self.critic_optimizer.zero_grad()
        (critic_loss + cfg.reconstruction_weight * reconstruction).backward()
        self.critic_optimizer.step()
        detached = state.detach()
        actor_loss = -self.critic(torch.cat([detached, self.actor(detached)], dim=1)).mean()
        imitation_loss = torch.zeros(())
        if imitation is not None and cfg.imitation_weight:
            with torch.no_grad():
                demonstrated = self.encoder(imitation["step"], imitation["dynamic"])
            imitation_loss = F.mse_loss(self.actor(demonstrated)[:, 0], imitation["action"])
        self.actor_optimizer.zero_grad()
        (actor_loss + (cfg.imitation_weight or 0.0) * imitation_loss).backward()
        self.actor_optimizer.step()
        for online, target in (
            (self.actor, self.target_actor),
            (self.critic, self.target_critic),
            (self.encoder, self.target_encoder),
        ):
            _soft_update(online, target, cfg.tau)
        return {
            "critic_loss": float(critic_loss.detach()),
            "actor_loss": float(actor_loss.detach()),
            "reconstruction": float(reconstruction.detach()),
            **({"imitation": float(imitation_loss.detach())} if imitation is not None and cfg.imitation_weight else {}),
        }

    def modules(self) -> dict[str, nn.Module]:
        return {
            "actor": self.actor,
            "critic": self.critic,
            "encoder": self.encoder,
            "target_actor": self.target_actor,
            "target_critic": self.target_critic,
            "target_encoder": self.target_encoder,
        }

    def state_dict(self) -> dict:
        return {
            "modules": {name: module.state_dict() for name, module in self.modules().items()},
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "buffer": self.buffer.state_dict(),
            "generator": self.generator.get_state(),
            "baseline": self.baseline,
        }

    def load_state_dict(self, state: dict) -> None:
        for name, module in self.modules().items():
            module.load_state_dict(state["modules"][name])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self.generator.set_state(state["generator"])
        self.baseline = state["baseline"]


@torch.no_grad()
def _soft_update(online: nn.Module, target: nn.Module, tau: float) -> None:
    for source, destination in zip(online.parameters(), target.parameters()):
        destination.mul_(1.0 - tau).add_(source, alpha=tau)
