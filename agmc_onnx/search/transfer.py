"""A learned agent carried from one network to another: ``search --save-agent`` / ``search --agent``.

The policy is defined per layer (per channel group): the actor and critic read one group's state (its
pooled GNN embedding, the graph embedding and three budget fractions), whose size does not depend on the
network. The GNN's weights act on node features of a fixed vocabulary. So encoder, decoder, actor and
critic move to a network with any number of layers; what belongs to one network (the pooling matrix
over its groups, AMC's rule table, the replay buffer) stays behind, except in the demonstrations: the best
episode of every network the agent searched (``imitation``), to which the saved actor is fitted.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import torch

from agmc_onnx.errors import PreconditionError
from agmc_onnx.io import write_bytes_atomic
from agmc_onnx.search.imitation import fit_actor, merge_demonstrations

__all__ = ["AGENT_FORMAT", "agent_snapshot", "save_agent", "load_agent", "apply_snapshot"]

AGENT_FORMAT = 2
READABLE_FORMATS = (1, 2)  # 1: before demonstrations; its actor is the search's own


def agent_snapshot(policy, own: dict | None = None) -> dict:
    """The transferable part of a DDPG policy (agmc or amc), with the demonstrations it carries and ``own``
    (this search's best plan, ``imitation.demonstration``); the actor is fitted to them."""
    agent = policy.agent
    encoder_config = getattr(agent.encoder, "config", None)
    demonstrations = merge_demonstrations(policy.carried, own)
    # Without a plan of its own (a policy applied as is) the loaded actor is already fitted to them.
    actor = fit_actor(agent.actor, agent.encoder, demonstrations)[0] if own is not None else agent.actor
    return {
        "format": AGENT_FORMAT,
        "policy": policy.name,
        "state_dim": agent.encoder.state_dim,
        "hidden_dim": agent.config.hidden_dim,
        "encoder_config": dataclasses.asdict(encoder_config) if encoder_config is not None else None,
        "actor": actor.state_dict(),
        "critic": agent.critic.state_dict(),
        "encoder": agent.encoder.transferable_state(),
        "demonstrations": demonstrations,
    }


def save_agent(snapshot: dict, path: str | Path) -> None:
    buffer = io.BytesIO()
    torch.save(snapshot, buffer)
    write_bytes_atomic(Path(path), buffer.getvalue())


def load_agent(path: str | Path) -> dict:
    """A snapshot written by ``save_agent``; anything else is refused with one line."""
    try:
        snapshot = torch.load(Path(path), weights_only=True)
    except FileNotFoundError:
        raise PreconditionError(f"agent file {path} does not exist") from None
    except Exception as exc:  # torch raises several kinds for files it cannot read
        raise PreconditionError(f"{path} is not an agent saved by --save-agent ({type(exc).__name__})") from None
    if not isinstance(snapshot, dict) or snapshot.get("format") not in READABLE_FORMATS:
        raise PreconditionError(f"{path} is not an agent saved by --save-agent (format {AGENT_FORMAT})")
    return snapshot


def apply_snapshot(policy, snapshot: dict) -> None:
    """Load ``snapshot`` into a freshly built policy of the same kind and sizes (targets copied too)."""
    agent = policy.agent
    if snapshot.get("policy") != policy.name:
        raise PreconditionError(
            f"the saved agent is an {snapshot.get('policy')} agent; this search's policy is {policy.name}"
        )
    expected = { "state_dim": agent.encoder.state_dim, "hidden_dim": agent.config.hidden_dim}
    config = getattr(agent.encoder, "config", None)
    expected["encoder_config"] = dataclasses.asdict(config) if config is not None else None
    differ = sorted(key for key, value in expected.items() if snapshot.get(key) != value)
    if differ:
        found = ", ".join(f"{key} {snapshot.get(key)!r} (this search: {expected[key]!r})" for key in differ)
        raise PreconditionError(f"the saved agent does not fit this search: {found}")
    agent.actor.load_state_dict(snapshot["actor"])
    agent.critic.load_state_dict(snapshot["critic"])
    agent.encoder.load_transferable_state(snapshot["encoder"])
    for online, target in ((agent.actor, agent.target_actor), (agent.critic, agent.target_critic),
                           (agent.encoder, agent.target_encoder)):
        target.load_state_dict(online.state_dict())
