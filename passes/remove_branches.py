"""Depth passes: delete residual branches and bypass their merges, or zero their outputs (the oracle's side).

``RemoveBranchesPass`` is what a keep ratio of 0 does to a removable group; ``ZeroBranchesPass``
builds the reference it must equal: the same graph with each removed branch's output multiplied by 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from agmc_onnx.errors import PostconditionError, PreconditionError
from agmc_onnx.groups.depth import ResidualBranch
from agmc_onnx.passes.base import GraphPass, PassResult

__all__ = ["RemoveBranchesPass", "ZeroBranchesPass", "outermost_branches"]


def outermost_branches(branches: Sequence[ResidualBranch]) -> tuple[ResidualBranch, ...]:
    """Drop branches that lie inside another one of ``branches`` (deleting the outer one deletes them)."""
    inside = {name for branch in branches for name in branch.nodes}
    return tuple(b for b in branches if b.merge not in inside)


def _check_branch_present(graph: gs.Graph, branch: ResidualBranch, pass_name: str) -> gs.Node:
    nodes = {node.name: node for node in graph.nodes}
    merge = nodes.get(branch.merge)
    if merge is None:
        raise PreconditionError(f"{pass_name}: merge '{branch.merge}' of branch {branch.id} is not in the graph")
    if branch.merge_input >= len(merge.inputs) or merge.inputs[branch.merge_input].name != branch.output:
        raise PreconditionError(
            f"{pass_name}: input {branch.merge_input} of '{branch.merge}' is not '{branch.output}' "
            f"(branch {branch.id})"
        )
    missing = [name for name in branch.nodes if name not in nodes]
    if missing:
        raise PreconditionError(f"{pass_name}: branch {branch.id} node '{missing[0]}' is not in the graph")
    return merge


class _BranchesPass(GraphPass):
    """A pass over residual branches. Requires: every merge and branch node exists, and the merge still
    reads the branch output."""

    def __init__(self, branches: Sequence[ResidualBranch]) -> None:
        self.branches = tuple(branches)

    def requires(self, graph: gs.Graph) -> None:
        for branch in self.branches:
            _check_branch_present(graph, branch, self.name)


class RemoveBranchesPass(_BranchesPass):
    """Deletes each branch's operators and bypasses its merge (of nested branches, the outermost).

    Ensures: no branch operator remains and nothing reads a branch output.
    """

    def __init__(self, branches: Sequence[ResidualBranch]) -> None:
        super().__init__(outermost_branches(branches))

    def call(self, graph: gs.Graph) -> PassResult:
        nodes = {node.name: node for node in graph.nodes}
        removed = 0
        for branch in self.branches:
            merge = nodes[branch.merge]
            del merge.inputs[branch.merge_input]
            if len(merge.inputs) == 1:
                _bypass(graph, merge)
            for name in branch.nodes:
                nodes[name].outputs.clear()
                nodes[name].inputs.clear()
            removed += branch.n_operators
        graph.cleanup(remove_unused_graph_inputs=False).toposort()
        return PassResult(graph, bool(self.branches), {"removed_branches": len(self.branches), "removed_nodes": removed})

    def ensures(self, graph: gs.Graph) -> None:
        names = {node.name for node in graph.nodes}
        read = {t.name for node in graph.nodes for t in node.inputs}
        for branch in self.branches:
            left = [n for n in branch.nodes if n in names]
            if left:
                raise PostconditionError(f"{self.name}: branch {branch.id} operator '{left[0]}' is still in the graph")
            if branch.output in read:
                raise PostconditionError(f"{self.name}: '{branch.output}' of branch {branch.id} is still read")


def _bypass(graph: gs.Graph, merge: gs.Node) -> None:
    """A merge left with one input: its readers read that input instead (an Identity if it is a graph output)."""
    source, result = merge.inputs[0], merge.outputs[0]
    if result in graph.outputs:
        merge.op, merge.attrs = "Identity", {}
        return
    for reader in list(result.outputs):
        for position, tensor in enumerate(reader.inputs):
            if tensor is result:
                reader.inputs[position] = source
    merge.outputs.clear()
    merge.inputs.clear()


def _numpy_dtype(tensor: gs.Tensor) -> np.dtype:
    try:
        return np.dtype(tensor.dtype) if tensor.dtype is not None else np.dtype(np.float32)
    except TypeError:  # an ONNX element type code rather than a numpy type
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(int(tensor.dtype)))


class ZeroBranchesPass(_BranchesPass):
    """Multiplies each branch's output by 0 where the merge reads it: the reference of a depth removal."""

    def call(self, graph: gs.Graph) -> PassResult:
        nodes = {node.name: node for node in graph.nodes}
        for branch in self.branches:
            merge = nodes[branch.merge]
            source = merge.inputs[branch.merge_input]
            zeroed = gs.Variable(f"{branch.output}__zeroed", dtype=source.dtype)
            zero = gs.Constant(f"{branch.output}__zero", np.zeros((), dtype=_numpy_dtype(source)))
            graph.nodes.append(gs.Node("Mul", f"{branch.merge}__zero_{branch.id}", inputs=[source, zero], outputs=[zeroed]))
            merge.inputs[branch.merge_input] = zeroed
        graph.toposort()
        return PassResult(graph, bool(self.branches), {"zeroed_branches": len(self.branches)})

    def ensures(self, graph: gs.Graph) -> None:
        nodes = {node.name: node for node in graph.nodes}
        for branch in self.branches:
            read = nodes[branch.merge].inputs[branch.merge_input]
            if not read.inputs or read.inputs[0].op != "Mul":
                raise PostconditionError(f"{self.name}: '{branch.merge}' does not read a zeroed branch {branch.id}")
