"""Demonstrations: the best episode of each network an agent was trained on, and an actor fitted to them.

A DDPG actor after a few hundred episodes is not the policy that found the best plan: the best rewards come
from exploration noise around it, so the actor's mean, applied as is to an unseen network, shows little of
what the search learned. A saved agent therefore carries, per network it searched, the best episode's
states and actions (self-imitation), and its actor is fitted to all of them by regression: applied to the
same networks it plays their best plans again, and on an unseen network it plays what those plans have in
common as a function of the layers' embeddings. The encoder is not changed by the fit (the critic and the
later search read the same states).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["demonstration", "network_key", "merge_demonstrations", "fit_actor", "FIT_STEPS", "FIT_LR"]

# Full-batch Adam steps and rate of the fit: a few dozen states per network, fitted in a second or two.
FIT_STEPS = 1000
FIT_LR = 1e-3


def network_key(inputs: dict[str, torch.Tensor]) -> str:
    """Identifies the network a demonstration was played on, from its static inputs."""
    digest = hashlib.sha1()
    for name in sorted(inputs):
        digest.update(name.encode())
        digest.update(inputs[name].detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def action_for_count(env, step: int, count: int, iterations: int = 30) -> float:
    """The middle of the action interval whose kept count at ``step`` is ``count`` (the environment in the state
    just before ``step``). The effective action an episode logs is the interval's lower edge, where a fitted
    actor's slightest error below it rounds to another count; the middle tolerates errors either way."""

    def lowest(predicate) -> float:  # the smallest action for which the monotone ``predicate`` holds
        low, high = 0.0, 1.0
        if predicate(low):
            return low
        for _ in range(iterations):
            middle = 0.5 * (low + high)
            low, high = (low, middle) if predicate(middle) else (middle, high)
        return high

    start = lowest(lambda action: env.desired_count(step, action) >= count)
    if env.desired_count(step, 1.0) <= count:
        return 0.5 * (start + 1.0)
    stop = lowest(lambda action: env.desired_count(step, action) > count)
    return 0.5 * (start + stop)


def demonstration(env, keep_counts: Sequence[int], inputs: dict[str, torch.Tensor], reward: float) -> dict:
    """A plan replayed through ``env`` as the agent would play it: per step the dynamic features on the way to
    ``keep_counts`` and the action that keeps each count (``action_for_count``)."""
    env.reset()
    dynamics, actions = [], []
    for step, count in enumerate(keep_counts):
        dynamics.append(np.asarray(env.dynamic(), np.float32))
        actions.append(action_for_count(env, step, int(count)))
        env.step(actions[-1])
    env.reset()
    return {
        "network": network_key(inputs),
        "inputs": {name: tensor.detach().clone() for name, tensor in inputs.items()},
        "step": torch.arange(len(actions), dtype=torch.long),
        "dynamic": torch.tensor(np.stack(dynamics)),
        "action": torch.tensor(actions, dtype=torch.float32),
        "reward": float(reward),
    }


def merge_demonstrations(carried: Sequence[dict], own: dict | None) -> list[dict]:
    """The carried demonstrations with this network's own in place of any earlier one of the same network."""
    if own is None:
        return list(carried)
    return [d for d in carried if d["network"] != own["network"]] + [own]


def fit_actor(
    actor: nn.Module,
    state_encoder: nn.Module,
    demonstrations: Sequence[dict],
    steps: int = FIT_STEPS,
    lr: float = FIT_LR,
) -> tuple[nn.Module, list[float]]:
    """A copy of ``actor`` fitted (mean squared error, every network weighted alike) to reproduce the actions
    of ``demonstrations`` from their states under ``state_encoder``; the losses of every step."""
    fitted = copy.deepcopy(actor)
    if not demonstrations or steps <= 0:
        return fitted, []
    with torch.no_grad():
        states = [
            torch.cat([state_encoder.static_table_of(d["inputs"])[d["step"]], d["dynamic"]], dim=1)
            for d in demonstrations
        ]
    targets = [d["action"] for d in demonstrations]
    optimizer = torch.optim.Adam(fitted.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        loss = torch.stack([F.mse_loss(fitted(s)[:, 0], t) for s, t in zip(states, targets)]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    return fitted, history
