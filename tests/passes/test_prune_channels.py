"""PruneChannelsPass and the pass framework: contract checks, no mutation of the caller's model."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs
import pytest
import tiny_models

from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import PostconditionError, PreconditionError
from agmc_onnx.groups.flow import SliceConstant
from agmc_onnx.importance import channel_scores
from agmc_onnx.passes.base import PassManager
from agmc_onnx.passes.cleanup import CleanupPass
from agmc_onnx.passes.fold_constants import FoldConstantsPass, NameNodesPass
from agmc_onnx.passes.prune_channels import PruneChannelsPass
from agmc_onnx.plan import select_channels, uniform_plan


def _pass_for(model, keep_ratio: float):
    analysis = analyze_model(model)
    selection = select_channels(uniform_plan(analysis.groups, keep_ratio), analysis.groups, channel_scores(analysis))
    kept = analysis.kept_positions(selection.dropped_roots(analysis.groups))
    lengths = {name: len(analysis.flow.tensors[name]) for name in kept}
    return analysis, PruneChannelsPass(analysis.flow.edits, kept, lengths)


def test_nothing_to_remove_reports_not_modified():
    analysis, prune_pass = _pass_for(tiny_models.conv_bn_relu(), 1.0)
    result = prune_pass(gs.import_onnx(analysis.model))
    assert result.modified is False and result.stats["removed_positions"] == 0


def test_prune_reports_what_it_removed():
    analysis, prune_pass = _pass_for(tiny_models.conv_bn_relu(), 0.5)
    result = prune_pass(gs.import_onnx(analysis.model))
    # 4 channels leave each of the three tensors they flow through (conv, BN, ReLU outputs)
    assert result.modified and result.stats["removed_positions"] == 12
    assert result.stats["sliced_constants"] == 7  # conv weight+bias, 4 BN params, consumer weight


def test_requires_rejects_a_missing_node():
    analysis, prune_pass = _pass_for(tiny_models.conv_bn_relu(), 0.5)
    graph = gs.import_onnx(analysis.model)
    graph.nodes[0].name = "renamed"
    with pytest.raises(PreconditionError, match="node '.*' is not in the graph"):
        prune_pass(graph)


def test_requires_rejects_emptying_a_tensor():
    analysis = analyze_model(tiny_models.conv_bn_relu())
    tensor = next(iter(analysis.flow.tensors))
    broken = PruneChannelsPass(analysis.flow.edits, {tensor: np.array([], dtype=np.int64)}, {tensor: 3})
    with pytest.raises(PreconditionError, match="would keep no channels"):
        broken(gs.import_onnx(analysis.model))


class _SlicesTooMuch(PruneChannelsPass):
    """A deliberately broken rewrite: drops one extra output channel of the first conv."""

    def call(self, graph):
        result = super().call(graph)
        conv = next(n for n in graph.nodes if n.op == "Conv")
        conv.inputs[1] = gs.Constant("broken", conv.inputs[1].values[:-1])
        return result


def test_ensures_catches_a_broken_rewrite():
    analysis, prune_pass = _pass_for(tiny_models.conv_bn_relu(), 0.5)
    broken = _SlicesTooMuch(prune_pass.edits, prune_pass.kept, prune_pass.lengths)
    with pytest.raises(PostconditionError, match="expected 4"):
        broken(gs.import_onnx(analysis.model))


def test_stray_exceptions_are_wrapped_with_the_pass_name():
    bad_edit = SliceConstant("Conv4", 1, 7, "conv_out3")  # axis 7 does not exist
    analysis = analyze_model(tiny_models.conv_bn_relu())
    broken = PruneChannelsPass([bad_edit], {"conv_out3": np.arange(4)}, {"conv_out3": 8})
    with pytest.raises(PostconditionError, match="PruneChannelsPass failed"):
        broken(gs.import_onnx(analysis.model))


def test_manager_never_mutates_the_callers_model():
    model = tiny_models.residual_chain()
    before = model.SerializeToString()
    analysis, prune_pass = _pass_for(model, 0.5)
    PassManager([NameNodesPass(), FoldConstantsPass(), prune_pass, CleanupPass()]).run(analysis.model)
    assert model.SerializeToString() == before


def test_name_nodes_pass_makes_names_unique():
    model = tiny_models.conv_bn_relu()
    for node in model.graph.node:
        node.name = ""
    graph = gs.import_onnx(model)
    result = NameNodesPass()(graph)
    names = [n.name for n in graph.nodes]
    assert result.modified and len(set(names)) == len(names) and all(names)


class _BreaksTheGroups(PruneChannelsPass):
    """A deliberately broken rewrite: a grouped convolution's group no longer divides its output channels."""

    def call(self, graph):
        result = super().call(graph)
        conv = next(n for n in graph.nodes if n.op == "Conv" and n.attrs.get("group", 1) > 1)
        conv.attrs["group"] = conv.inputs[1].shape[0] + 1
        return result


def test_ensures_catches_a_group_that_does_not_divide_the_channels():
    analysis, prune_pass = _pass_for(tiny_models.grouped_conv(), 0.5)
    assert any(getattr(e, "kind", None) == "conv_group" for e in prune_pass.edits)
    broken = _BreaksTheGroups(prune_pass.edits, prune_pass.kept, prune_pass.lengths)
    with pytest.raises(PostconditionError, match="does not divide"):
        broken(gs.import_onnx(analysis.model))
