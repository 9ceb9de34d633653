"""Grouped (not depthwise) convolutions pruned inside their groups: the group count stays, every group shrinks
equally.

A grouped Conv with ``g`` groups of ``k`` input channels may lose input channels as long as each group loses
as many as the others, and output channels as long as each group keeps as many. The outputs are fresh, so
output position ``j`` of every group is tied into one unit (the same in-group index everywhere). The
inputs arrive with ties of their own (a channel shuffle interleaves the groups of an earlier grouped
convolution), so they are *balanced*: every unit that touches the input must take as many positions from
each group. A unit that already does is left alone; units that lie within one group are matched across the
groups in position order (with fresh inputs this is again the same in-group index); anything else is
pinned, so it is kept whole. Later ties only merge units, and a merge of balanced units stays balanced,
so the balance found here holds for the final units.

Exact under the oracle: each output row of the pruned weight keeps the in-group inputs its own group keeps,
and the masked original zeroes, per row, the inputs its group loses.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from agmc_onnx.groups.context import RuleContext

__all__ = ["prunes_inside_groups", "tie_inside_groups"]


def prunes_inside_groups(n_in: int, groups: int) -> bool:
    """In-group units when they outnumber whole conv groups (ShuffleNet's g=3 1×1 convolutions, AlexNet's
    two towers); whole groups otherwise (depthwise, ResNeXt's 32 groups of 4)."""
    return groups > 1 and n_in // groups > groups


def tie_inside_groups(ctx: RuleContext, name: str, x_atoms: np.ndarray, y_atoms: np.ndarray, groups: int) -> None:
    k_out = len(y_atoms) // groups
    for j in range(k_out):
        ctx.flow.tie_all(y_atoms[j::k_out])
    _balance(ctx, name, x_atoms, groups)


def _balance(ctx: RuleContext, name: str, x_atoms: np.ndarray, groups: int) -> None:
    """Tie or keep whole the input's units so that each takes as many positions from every conv group."""
    roots = ctx.flow.roots(x_atoms).reshape(groups, -1)
    counts: dict[int, np.ndarray] = {}
    for group, row in enumerate(roots):
        for root in row.tolist():
            counts.setdefault(root, np.zeros(groups, dtype=np.int64))[group] += 1
    within: dict[int, list[list[int]]] = defaultdict(lambda: [[] for _ in range(groups)])
    unbalanced = []
    for root, count in counts.items():
        if np.all(count == count[0]):
            continue
        occupied = np.flatnonzero(count)
        if len(occupied) == 1:
            within[int(count[occupied[0]])][int(occupied[0])].append(root)
        else:
            unbalanced.append(root)
    for per_group in within.values():
        matched = min(len(roots_of) for roots_of in per_group)
        for index in range(matched):
            ctx.flow.tie_all(np.array([roots_of[index] for roots_of in per_group], dtype=np.int64))
        unbalanced += [root for roots_of in per_group for root in roots_of[matched:]]
    if unbalanced:
        reason = f"grouped Conv '{name}' cannot take these channels equally from each of its groups"
        ctx.flow.keep(np.array(unbalanced, dtype=np.int64), reason)
