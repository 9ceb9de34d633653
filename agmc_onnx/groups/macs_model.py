"""Fast MACs of a pruned model from per-group kept fractions, without rewriting anything.

The search asks this thousands of times per episode (AMC's action wall), so it is a dense
matrix product: each weighted layer's kept input/output fraction is a fixed part plus the
share of each group's positions in its tensor times that group's kept fraction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from agmc_onnx.graph.layers import WEIGHTED_OPS
from agmc_onnx.groups.flow import SliceConstant

__all__ = ["MacsModel"]


@dataclass(frozen=True)
class MacsModel:
    group_ids: tuple[str, ...]
    layer_names: tuple[str, ...]
    layer_macs: np.ndarray  # [n_layers]
    in_fixed: np.ndarray  # [n_layers] fraction of input positions in no prunable group
    in_share: np.ndarray  # [n_layers, n_groups]
    out_fixed: np.ndarray
    out_share: np.ndarray
    grouped: np.ndarray  # [n_layers] bool: grouped convs lose inputs only through their outputs

    @classmethod
    def from_analysis(cls, analysis) -> MacsModel:
        groups = analysis.prunable_groups
        group_ids = tuple(g.id for g in groups)
        root_to_col = {int(r): col for col, g in enumerate(groups) for r in g.unit_roots.tolist()}
        names, macs, grouped = [], [], []
        in_fixed, out_fixed, in_rows, out_rows = [], [], [], []
        tensors_of = _layer_tensors(analysis)
        # Grouped convs pruned inside their groups lose inputs like any layer; whole-group ones through outputs.
        inside_groups = {e.node for e in analysis.flow.edits if isinstance(e, SliceConstant) and e.groups > 1}
        for name, layer in analysis.layers.items():
            if layer.op_type not in WEIGHTED_OPS or layer.macs == 0:
                continue
            in_name, out_name = tensors_of[name]
            fixed_i, row_i = _shares(analysis, in_name, root_to_col, len(groups))
            fixed_o, row_o = _shares(analysis, out_name, root_to_col, len(groups))
            names.append(name)
            macs.append(layer.macs)
            grouped.append(layer.groups > 1 and name not in inside_groups)
            in_fixed.append(fixed_i)
            in_rows.append(row_i)
            out_fixed.append(fixed_o)
            out_rows.append(row_o)
        n = len(groups)
        return cls(
            group_ids=group_ids,
            layer_names=tuple(names),
            layer_macs=np.asarray(macs, dtype=np.float64),
            in_fixed=np.asarray(in_fixed, dtype=np.float64),
            in_share=np.asarray(in_rows, dtype=np.float64).reshape(-1, n),
            out_fixed=np.asarray(out_fixed, dtype=np.float64),
            out_share=np.asarray(out_rows, dtype=np.float64).reshape(-1, n),
            grouped=np.asarray(grouped, dtype=bool),
        )

    @property
    def total(self) -> float:
        return float(self.layer_macs.sum())

    def macs(self, keep_fractions: np.ndarray | Mapping[str, float]) -> float:
        """MACs when group i keeps ``keep_fractions[i]`` of its units (all other MACs unchanged)."""
        if isinstance(keep_fractions, Mapping):
            keep_fractions = np.array([keep_fractions.get(g, 1.0) for g in self.group_ids])
        keep = np.asarray(keep_fractions, dtype=np.float64)
        in_kept = self.in_fixed + self.in_share @ keep
        out_kept = self.out_fixed + self.out_share @ keep
        in_kept = np.where(self.grouped, 1.0, in_kept)
        return float(np.sum(self.layer_macs * in_kept * out_kept))


def _layer_tensors(analysis) -> dict[str, tuple[str, str]]:
    out = {}
    for node in analysis.model.graph.node:
        out[node.name] = (node.input[0] if node.input else "", node.output[0] if node.output else "")
    return out


def _shares(analysis, tensor: str, root_to_col: Mapping[int, int], n_groups: int) -> tuple[float, np.ndarray]:
    row = np.zeros(n_groups)
    info = analysis.flow.tensors.get(tensor)
    if info is None or len(info) == 0:
        return 1.0, row
    roots = analysis.flow.roots(info.atoms).tolist()
    fixed = 0
    for root in roots:
        col = root_to_col.get(root)
        if col is None:
            fixed += 1
        else:
            row[col] += 1
    return fixed / len(roots), row / len(roots)
