"""``agmc-onnx search``: help, bad input, an unreachable budget, and a plan that ``prune`` can apply."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from search_fixtures import one_torch_thread  # noqa: F401  (autouse fixture)
from trained_models import shared_model_path

from agmc_onnx.cli.main import cli
from agmc_onnx.models.zoo import demo_data_path
from agmc_onnx.plan import PruningPlan


def test_help_lists_budgets_and_policies():
    result = CliRunner().invoke(cli, ["search", "--help"])
    assert result.exit_code == 0
    for option in ("--flops", "--latency", "--target", "--policy", "--round-to", "--resume", "--run-dir"):
        assert option in result.output
    assert "agmc|amc|uniform|random" in result.output
    assert "none|uniform|budget-relative" in result.output
    assert "wall|rescale" in result.output


def _search(tmp_path, *options: str):
    """``search`` on the shared ResNet-20 and the demo data, the plan written to ``tmp_path/plan.json``."""
    model = shared_model_path("resnet20")
    args = ["search", str(model), "--data", str(demo_data_path()), *options, "-o", str(tmp_path / "plan.json")]
    return CliRunner().invoke(cli, args)


def test_two_budgets_at_once_are_a_usage_error(tmp_path):
    result = _search(tmp_path, "--flops", "0.5", "--latency", "0.5")
    assert result.exit_code == 2
    assert "exactly one budget" in result.output
    assert not (tmp_path / "plan.json").exists()


def test_unreachable_budget_fails_with_a_clear_message(tmp_path):
    result = _search(tmp_path, "--flops", "0.02", "--reward-size", "64")
    assert result.exit_code == 1
    assert "budget unreachable" in result.output and "lower bound 0.2" in result.output
    assert not (tmp_path / "plan.json").exists()


def _search_then_prune(tmp_path, *options: str):
    """Two random episodes on 64 reward images, then ``prune --ratios`` with the plan written:
    (the search's result, its plan, the prune's result)."""
    result = _search(tmp_path, "--policy", "random", "--episodes", "2", "--reward-size", "64", *options)
    assert result.exit_code == 0, result.output
    plan_path, model = tmp_path / "plan.json", shared_model_path("resnet20")
    pruned = CliRunner().invoke(
        cli, ["prune", str(model), "--ratios", str(plan_path), "-o", str(tmp_path / "pruned.onnx")]
    )
    return result, PruningPlan.from_json(plan_path.read_text()), pruned


def test_search_writes_a_plan_that_prune_applies(tmp_path):
    model = shared_model_path("resnet20")
    result, plan, pruned = _search_then_prune(tmp_path, "--flops", "0.6", "--action-center", "uniform")
    assert "episode 2/2" in result.output and "plan written to" in result.output
    assert plan.round_to == 8 and plan.metadata["search"]["policy"] == "random"
    assert plan.metadata["search"]["reward_bn_recalibrated"] is True
    assert plan.metadata["search"]["macs_kept_fraction"] <= 0.6
    log_lines = (tmp_path / "plan.run" / "episodes.jsonl").read_text().splitlines()
    assert [json.loads(line)["episode"] for line in log_lines] == [0, 1]
    assert pruned.exit_code == 0, pruned.output
    assert (tmp_path / "pruned.onnx").stat().st_size < model.stat().st_size


@pytest.mark.parametrize("budget_mode", ["wall", "rescale"])
def test_search_with_depth_writes_a_plan_that_deletes_branches(tmp_path, budget_mode):
    _, plan, pruned = _search_then_prune(tmp_path, "--flops", "0.5", "--depth", "0.9", "--budget-mode", budget_mode)
    assert plan.metadata["search"]["depth_threshold"] == 0.9
    assert plan.metadata["search"]["budget_mode"] == budget_mode
    assert plan.metadata["search"]["macs_kept_fraction"] <= 0.5
    assert 0.0 in plan.keep_ratios.values()
    assert pruned.exit_code == 0 and "residual branches removed, oracle passed" in pruned.output


def test_depth_threshold_outside_the_action_range_is_a_usage_error(tmp_path):
    result = _search(tmp_path, "--flops", "0.5", "--depth", "1.5")
    assert result.exit_code == 2 and "--depth" in result.output
