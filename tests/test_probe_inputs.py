"""Models with integer and boolean inputs: valid probe values everywhere, symbolic sequence length kept."""

from __future__ import annotations

import numpy as np
import onnx
import tiny_models

from agmc_onnx.analysis import analyze_model
from agmc_onnx.cost import create_session, measure_latency
from agmc_onnx.cost.session import model_index_bounds, random_inputs
from agmc_onnx.graph.probe import PROBE_LENGTH, probe_feeds
from agmc_onnx.plan import uniform_plan
from agmc_onnx.prune import prune_model
from agmc_onnx.validate import validate_pruned


def test_token_ids_stay_inside_the_embedding_table_and_masks_are_ones():
    model = tiny_models.token_encoder(vocab=50)
    feeds = probe_feeds(model, batch_size=3, seed=1)
    ids, mask = feeds["input_ids"], feeds["mask"]
    assert ids.dtype == np.int64 and ids.shape == (3, PROBE_LENGTH)
    assert ids.min() >= 0 and ids.max() < 50 and len(np.unique(ids)) > 10
    assert mask.dtype == np.bool_ and mask.all()


def test_text_model_prunes_with_the_oracle_and_keeps_its_symbolic_sequence_length():
    model = tiny_models.token_encoder()
    analysis = analyze_model(model)
    assert [g.n_channels for g in analysis.prunable_groups] == [16]
    result = prune_model(model, uniform_plan(analysis.groups, 0.5), analysis=analysis)
    assert validate_pruned(model, analysis, result.selection, result.model).passed
    dims = [d.dim_param for d in result.model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "sequence"]
    onnx.checker.check_model(result.model, full_check=True)


def test_latency_feeds_valid_token_ids():
    model = tiny_models.token_encoder(vocab=7)
    feeds = random_inputs(create_session(model), batch_size=2, index_bounds=model_index_bounds(model))
    assert feeds["input_ids"].max() < 7 and feeds["input_ids"].shape == (2, PROBE_LENGTH)
    stats = measure_latency(model, "server-cpu", warmup_runs=1, min_runs=2, min_seconds=0.0)
    assert stats.n_runs >= 2


def test_accuracy_of_a_text_model_is_one_clear_error():
    import pytest

    from agmc_onnx.errors import DataError
    from agmc_onnx.evaluate import evaluate_accuracy

    with pytest.raises(DataError, match="'input_ids' \\(tensor\\(int64\\)\\)"):
        evaluate_accuracy(tiny_models.token_encoder(), dataset=None)
