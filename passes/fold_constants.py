"""Preparation passes: give every node a unique name and fold constant subgraphs."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from agmc_onnx.errors import PostconditionError
from agmc_onnx.passes.base import GraphPass, PassResult

__all__ = ["NameNodesPass", "FoldConstantsPass"]


class NameNodesPass(GraphPass):
    """Names unnamed nodes (and renames duplicates) so that analysis and rewrites can refer to nodes."""

    def call(self, graph: gs.Graph) -> PassResult:
        seen: set[str] = set()
        renamed = 0
        for index, node in enumerate(graph.nodes):
            if not node.name or node.name in seen:
                base = node.name or f"{node.op}_{index}"
                name, suffix = base, 0
                while name in seen:
                    suffix += 1
                    name = f"{base}_{suffix}"
                node.name = name
                renamed += 1
            seen.add(node.name)
        return PassResult(graph, renamed > 0, {"renamed_nodes": renamed})

    def ensures(self, graph: gs.Graph) -> None:
        names = [node.name for node in graph.nodes]
        if len(set(names)) != len(names) or not all(names):
            raise PostconditionError("NameNodesPass left empty or duplicate node names")


class FoldConstantsPass(GraphPass):
    """Evaluates constant subgraphs (``Identity`` aliases of weights, static shape chains) ahead of time.

    Exporters alias bit-identical weights through ``Identity`` nodes and compute static shapes with
    ``Shape``→``Gather`` chains; folding turns both into plain constants that analysis can read and
    rewrites can change per consumer.
    """

    def call(self, graph: gs.Graph) -> PassResult:
        from agmc_onnx.cost.session import quiet_default_logger  # onnxruntime: only when folding runs

        n_before = len(graph.nodes)
        logger = gs.logger.G_LOGGER
        severity = logger.severity
        logger.severity = logger.ERROR  # its size warnings are about folding we want; restored below
        try:
            with quiet_default_logger():  # folding runs onnxruntime sessions without options
                graph.fold_constants(error_ok=True).cleanup(remove_unused_graph_inputs=False).toposort()
        finally:
            logger.severity = severity
        n_after = len(graph.nodes)
        return PassResult(graph, n_after != n_before, {"folded_nodes": n_before - n_after})
