"""Demonstrations for a saved agent: a plan replayed through the environment with robust action targets."""

from __future__ import annotations

import pytest
import torch
from search_fixtures import one_torch_thread  # noqa: F401  (autouse fixture)
from trained_models import shared_model_path

from agmc_onnx.analysis import analyze_model
from agmc_onnx.importance import channel_scores
from agmc_onnx.io import load_model
from agmc_onnx.search.agent import DDPGAgent, DDPGConfig
from agmc_onnx.search.budget import macs_wall, uniform_keep_ratio
from agmc_onnx.search.encoder import EncoderConfig
from agmc_onnx.search.env import PruningEnv
from agmc_onnx.search.features import build_graph_features, search_order
from agmc_onnx.search.imitation import demonstration, fit_actor
from agmc_onnx.search.states import GraphState


def _env(budget_mode: str = "wall") -> tuple[PruningEnv, object]:
    analysis = analyze_model(load_model(shared_model_path("resnet20")))
    groups = search_order(analysis)
    wall = macs_wall(analysis, groups, 0.5, 0.2, 8, frozenset(), channel_scores(analysis, "l1"))
    return PruningEnv(groups, wall, rescale=budget_mode == "rescale"), analysis


@pytest.mark.parametrize("budget_mode", ["wall", "rescale"])
def test_a_demonstration_replays_its_plan_and_its_actions_keep_their_counts_under_small_errors(budget_mode):
    env, _ = _env(budget_mode)
    counts = uniform_keep_ratio(env.wall)[1]
    counts[0] = env.groups[0].n_units  # a plan with a group at full width and the rest uniform
    counts = env.wall.rescale(counts) if budget_mode == "rescale" else env.wall.enforce(counts)
    inputs = {"table": torch.zeros(len(counts), 2)}
    demo = demonstration(env, counts, inputs, reward=0.5)
    env.reset()
    for step, action in enumerate(demo["action"].tolist()):
        assert torch.allclose(torch.as_tensor(env.dynamic()), demo["dynamic"][step])
        for error in (-0.02, 0.0, 0.02):  # a fitted actor is close, not exact
            assert env.desired_count(step, action + error) == counts[step]
        env.step(action)
    assert env.finish().keep_counts == tuple(int(c) for c in counts)


def test_the_fitted_actor_reproduces_the_demonstrated_actions():
    env, analysis = _env()
    torch.manual_seed(0)
    encoder = GraphState(build_graph_features(analysis, env.groups), EncoderConfig(pretrain_epochs=0))
    counts = env.wall.enforce(env.wall.n_units.copy())
    demo = demonstration(env, counts, encoder.static_inputs(), reward=0.5)
    actor = DDPGAgent(encoder, len(env.groups), DDPGConfig(), seed=0).actor
    fitted, losses = fit_actor(actor, encoder, [demo])
    assert losses[-1] < 0.01 * losses[0]
    states = torch.cat([encoder.static_table()[demo["step"]], demo["dynamic"]], dim=1)
    with torch.no_grad():
        assert (fitted(states)[:, 0] - demo["action"]).abs().max() < 0.02
        assert not torch.equal(actor(states), fitted(states))  # a copy was fitted, the actor is untouched
