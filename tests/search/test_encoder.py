"""Graph features come from real layer attributes; the auto-encoder really trains."""

from __future__ import annotations

import torch
from search_fixtures import one_torch_thread, tiny_classifier  # noqa: F401  (autouse fixture)
from trained_models import shared_model_path

from agmc_onnx.analysis import analyze_model
from agmc_onnx.io import load_model
from agmc_onnx.search.encoder import EncoderConfig
from agmc_onnx.search.features import NODE_FEATURES, build_graph_features, rule_features, search_order
from agmc_onnx.search.states import GraphState


def test_node_features_are_layer_attributes_scaled_to_unit_range():
    analysis = analyze_model(tiny_classifier())
    features = build_graph_features(analysis)
    x = features.data.x
    assert x.shape == (len(analysis.layers), len(NODE_FEATURES))
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    conv_rows = [i for i, n in enumerate(features.node_names) if analysis.layers[n].op_type == "Conv"]
    assert torch.all(x[conv_rows, NODE_FEATURES.index("op_Conv")] == 1.0)
    # Same graph, same features: nothing random reaches the encoder.
    assert torch.equal(x, build_graph_features(analysis).data.x)
    assert features.data.edge_index.shape[1] == 2 * analysis.layer_graph.number_of_edges()


def test_every_group_pools_over_its_own_nodes():
    analysis = analyze_model(tiny_classifier())
    features = build_graph_features(analysis)
    for group, nodes in zip(search_order(analysis), features.group_nodes):
        assert {features.node_names[i] for i in nodes} == set(group.nodes)


def test_rule_features_are_min_max_normalised():
    analysis = analyze_model(load_model(shared_model_path("resnet20")))
    table = rule_features(analysis)
    assert table.shape == (len(analysis.prunable_groups), 7)
    assert table.min() == 0.0 and table.max() == 1.0


def test_autoencoder_reconstruction_loss_decreases():
    analysis = analyze_model(load_model(shared_model_path("resnet20")))
    torch.manual_seed(0)
    state = GraphState(build_graph_features(analysis), EncoderConfig(pretrain_epochs=200))
    history = state.pretrain(seed=0)
    assert len(history) == 200
    assert sum(history[-10:]) / 10 < 0.75 * sum(history[:10]) / 10
    table = state.static_table()
    assert table.shape == (len(analysis.prunable_groups), 2 * state.config.embed_dim)
    # Groups in different places of the network get different states.
    assert torch.unique(table.detach().round(decimals=4), dim=0).shape[0] > len(table) // 2
