"""CleanupPass: drop nodes and constants nothing reads any more, and keep the node order topological."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from agmc_onnx.passes.base import GraphPass, PassResult

__all__ = ["CleanupPass"]


class CleanupPass(GraphPass):
    def call(self, graph: gs.Graph) -> PassResult:
        n_before = len(graph.nodes)
        graph.cleanup(remove_unused_graph_inputs=False).toposort()
        return PassResult(graph, len(graph.nodes) != n_before, {"removed_nodes": n_before - len(graph.nodes)})
