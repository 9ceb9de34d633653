"""RemoveBranchesPass and ZeroBranchesPass: contracts and the structural change."""

from __future__ import annotations

import dataclasses

import onnx_graphsurgeon as gs
import pytest
import tiny_models

from agmc_onnx.analysis import analyze_model
from agmc_onnx.errors import PostconditionError, PreconditionError
from agmc_onnx.passes.base import PassManager
from agmc_onnx.passes.remove_branches import RemoveBranchesPass, ZeroBranchesPass


@pytest.fixture(scope="module")
def chain():
    return analyze_model(tiny_models.residual_chain(depth=3))


def test_removes_operators_and_bypasses_the_add(chain):
    branch = chain.depth.branches[0]
    model, stats = PassManager([RemoveBranchesPass([branch])]).run(chain.model)
    names = {n.name for n in model.graph.node}
    assert branch.merge not in names and names.isdisjoint(branch.nodes)
    assert stats["RemoveBranchesPass"] == {"removed_branches": 1, "removed_nodes": branch.n_operators}
    assert len(model.graph.node) == len(chain.model.graph.node) - branch.n_operators


def test_nothing_to_remove_reports_not_modified(chain):
    graph = gs.import_onnx(chain.model)
    assert RemoveBranchesPass([])(graph).modified is False


def test_requires_rejects_a_branch_whose_merge_reads_something_else(chain):
    branch = dataclasses.replace(chain.depth.branches[0], output="not_the_branch_output")
    with pytest.raises(PreconditionError, match="is not 'not_the_branch_output'"):
        PassManager([RemoveBranchesPass([branch])]).run(chain.model)


def test_ensures_catches_a_branch_left_in_place(chain):
    class KeepsTheBranch(RemoveBranchesPass):
        def call(self, graph):
            result = super().call(gs.import_onnx(chain.model))  # rewrites a copy, leaves ``graph`` as it was
            return dataclasses.replace(result, graph=graph)

    with pytest.raises(PostconditionError, match="is still in the graph"):
        PassManager([KeepsTheBranch([chain.depth.branches[0]])]).run(chain.model)


def test_zero_pass_feeds_the_merge_a_zeroed_branch(chain):
    branch = chain.depth.branches[1]
    model, _ = PassManager([ZeroBranchesPass([branch])]).run(chain.model)
    merge = next(n for n in model.graph.node if n.name == branch.merge)
    zeroing = next(n for n in model.graph.node if n.output[0] == merge.input[branch.merge_input])
    assert zeroing.op_type == "Mul" and zeroing.input[0] == branch.output
