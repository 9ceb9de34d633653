"""``agmc-onnx prune --reconstruct``: a better pruned model, and one clear message for each bad input."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from search.search_fixtures import SPEC, labelled_by_model, one_torch_thread, tiny_classifier  # noqa: F401

from agmc_onnx.analysis import analyze_model
from agmc_onnx.cli.main import cli
from agmc_onnx.evaluate import evaluate_accuracy
from agmc_onnx.io import load_model


@pytest.fixture
def tiny(tmp_path):
    model = tiny_classifier()
    path = tmp_path / "tiny.onnx"
    onnx.save(model, path)  # noqa: TID251 - test fixture
    data = labelled_by_model(model, n_images=400)
    npz = tmp_path / "tiny.npz"
    np.savez(npz, x=data.images, y=data.labels)
    return path, npz, data


def _prune(path, out, *extra):
    return CliRunner().invoke(cli, ["prune", str(path), "--keep", "0.5", "-o", str(out), "--json", *extra])


def test_reconstruction_beats_batchnorm_re_estimation_alone(tiny, tmp_path):
    path, npz, data = tiny
    calibrated, reconstructed = tmp_path / "calibrated.onnx", tmp_path / "reconstructed.onnx"
    assert _prune(path, calibrated, "--calibrate", str(npz)).exit_code == 0
    result = _prune(path, reconstructed, "--reconstruct", str(npz))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["reconstructed"] is True
    top1 = {p.stem: evaluate_accuracy(load_model(p), data, SPEC).top1 for p in (calibrated, reconstructed)}
    assert top1["reconstructed"] > top1["calibrated"]


def test_taylor_importance_takes_its_batches_from_the_data(tiny, tmp_path):
    path, npz, _ = tiny
    result = _prune(path, tmp_path / "out.onnx", "--importance", "taylor", "--calibrate", str(npz))
    assert result.exit_code == 0, result.output
    missing = _prune(path, tmp_path / "none.onnx", "--importance", "taylor")
    assert missing.exit_code == 2 and "needs images" in missing.output
    assert not (tmp_path / "none.onnx").exists()


def test_too_few_calibration_images_says_how_many(tiny, tmp_path):
    path, npz, _ = tiny
    result = _prune(path, tmp_path / "out.onnx", "--reconstruct", str(npz), "--calibration-images", "1")
    assert result.exit_code == 1
    assert "needs at least" in result.output and "calibration images" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.onnx").exists()


def test_data_that_does_not_fit_the_model_is_refused(tiny, tmp_path):
    path, _, data = tiny
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((40, 16, 16, 3), np.uint8), y=np.zeros(40, np.int64))
    result = _prune(path, tmp_path / "out.onnx", "--reconstruct", str(wrong))
    assert result.exit_code == 1
    assert "16×16" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out.onnx").exists()


def test_reconstruction_refits_the_unpruned_later_layers_too_unless_told_not_to(tiny, tmp_path):
    path, npz, _ = tiny
    first = analyze_model(load_model(path)).prunable_groups[0]  # only the first layer's outputs are pruned
    ratios = tmp_path / "ratios.json"
    ratios.write_text(json.dumps({getattr(first, "name", first): 0.5}))

    def prune(out, *extra):
        return CliRunner().invoke(cli, ["prune", str(path), "--ratios", str(ratios), "-o", str(out), "--json", *extra])

    own = prune(tmp_path / "own.onnx", "--reconstruct", str(npz), "--refit-pruned-only")
    default = prune(tmp_path / "default.onnx", "--reconstruct", str(npz))
    later = prune(tmp_path / "later.onnx", "--reconstruct", str(npz), "--refit-later-layers")
    assert own.exit_code == 0 and later.exit_code == 0 and default.exit_code == 0, later.output
    assert json.loads(later.output)["layers_refitted"] > json.loads(own.output)["layers_refitted"] == 1
    assert json.loads(default.output)["layers_refitted"] == json.loads(later.output)["layers_refitted"]
    for flag in ("--refit-later-layers", "--refit-pruned-only"):
        alone = prune(tmp_path / "alone.onnx", flag)
        assert alone.exit_code == 2 and "need --reconstruct" in alone.output


def test_by_default_reconstruction_refits_the_later_layers_on_up_to_1024_images(tiny):
    """The library's default (what `compress` runs before fine-tuning), not only the CLI's."""
    from agmc_onnx.plan import PruningPlan
    from agmc_onnx.prune import prune_model
    from agmc_onnx.reconstruct.run import ReconstructConfig, reconstruct_pruned

    path, _, data = tiny
    model = load_model(path)
    analysis = analyze_model(model)
    first = analysis.prunable_groups[0]
    result = prune_model(model, PruningPlan({getattr(first, "name", first): 0.5}), analysis=analysis)
    default = reconstruct_pruned(analysis, result.selection, result.model, data, SPEC)
    own = reconstruct_pruned(analysis, result.selection, result.model, data, SPEC, ReconstructConfig(downstream=False))
    assert default.layers_refitted > own.layers_refitted == 1
    assert default.n_images == len(data.labels) == 400  # all of them: fewer than 1,024



def test_the_search_reward_reconstructs_only_the_layers_that_lost_channels(tiny):
    """Per episode the reward keeps the cheaper re-fit its cost was measured with, not the library default."""
    from onnx import numpy_helper

    from agmc_onnx.plan import PruningPlan
    from agmc_onnx.prune import apply_selection
    from agmc_onnx.search.reward import AccuracyReward, RewardConfig

    path, _, data = tiny
    analysis = analyze_model(load_model(path))
    first = analysis.prunable_groups[0]
    reward = AccuracyReward(analysis, data, SPEC, RewardConfig(reconstruct=True, calibration_images=64))
    selection = reward.selection_of(PruningPlan({getattr(first, "name", first): 0.5}))
    before, _ = apply_selection(analysis, selection)
    after = {init.name: numpy_helper.to_array(init) for init in reward.pruned_model(selection).graph.initializer}
    weights = [node.input[1] for node in before.graph.node if node.op_type in ("Conv", "Gemm", "MatMul")]
    values = {init.name: numpy_helper.to_array(init) for init in before.graph.initializer}
    refitted = [name for name in weights if not np.array_equal(values[name], after[name])]
    assert len(refitted) == 1 and weights[-1] not in refitted  # the later layers, the head too, keep their weights
