"""Channel flow: which channel of which tensor is the same (or must be pruned together with) which other.

Every channel of a channel-carrying tensor is an *atom*. Producers (Conv, Gemm, MatMul with constant
weights) create fresh atoms; pass-through ops hand their input's atoms on; Concat/Split/Flatten
rearrange them; element-wise ops with two channel-carrying inputs, depthwise and grouped convs *tie*
atoms (union-find), so that tied atoms are kept or dropped together. A root of the union-find is a
*unit*: the smallest thing a selection can keep or drop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ChannelTensor", "ChannelFlow", "SliceConstant", "RewriteAttribute", "Edit"]


@dataclass(frozen=True)
class ChannelTensor:
    """The channel axis of one tensor and the atom carried at each position along it."""

    axis: int
    atoms: np.ndarray  # int64, one entry per position along ``axis`` (repeats allowed after Flatten)

    def __len__(self) -> int:
        return int(self.atoms.shape[0])


@dataclass(frozen=True)
class SliceConstant:
    """Keep only the kept positions of ``tensor`` along ``axis`` of constant input ``input_index``."""

    node: str
    input_index: int
    axis: int
    tensor: str
    is_weight: bool = False  # counts toward importance (Conv/Gemm/MatMul weights)
    consumes: bool = False  # the weight reads ``tensor`` (zeroed by the oracle), rather than producing it
    # A grouped Conv's input: ``tensor``'s positions fall into ``groups`` equal conv groups, ``axis`` indexes
    # the position within its group and the weight's rows (axis 0) split into the same groups.
    groups: int = 1


@dataclass(frozen=True)
class RewriteAttribute:
    """Recompute a structural value of ``node`` (conv group count, split sizes, slice bounds, reshape target)."""

    node: str
    kind: str  # "conv_group" | "split" | "slice" | "slice_computed" | "reshape" | "reshape_piece" | "gather"
    tensors: tuple[str, ...]
    detail: tuple = ()


Edit = SliceConstant | RewriteAttribute


@dataclass
class ChannelFlow:
    """Mutable state of the propagation; frozen into groups once the graph has been walked."""

    parent: list[int] = field(default_factory=list)
    pin_reasons: dict[int, str] = field(default_factory=dict)
    # Units that must be kept whole but do not pin their group (a grouped Conv cannot balance them).
    keep_reasons: dict[int, str] = field(default_factory=dict)
    tensors: dict[str, ChannelTensor] = field(default_factory=dict)
    edits: list[Edit] = field(default_factory=list)
    # producer node name -> output tensor name whose atoms it created
    producers: dict[str, str] = field(default_factory=dict)
    # (number of unions and new atoms when computed, root of every atom): ``roots`` reads it in one step
    _root_table: tuple[int, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)
    _changes: int = field(default=0, init=False, repr=False, compare=False)

    def new_atoms(self, count: int, pin_reason: str | None = None) -> np.ndarray:
        self._changes += 1
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        atoms = np.arange(start, start + count, dtype=np.int64)
        if pin_reason is not None:
            for atom in atoms:
                self.pin_reasons[int(atom)] = pin_reason
        return atoms

    def find(self, atom: int) -> int:
        parent = self.parent
        root = atom
        while parent[root] != root:
            root = parent[root]
        while parent[atom] != root:  # path compression
            parent[atom], atom = root, parent[atom]
        return root

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(int(a)), self.find(int(b))
        if root_a == root_b:
            return
        if root_b < root_a:
            root_a, root_b = root_b, root_a
        self.parent[root_b] = root_a
        self._changes += 1
        for reasons in (self.pin_reasons, self.keep_reasons):
            reason = reasons.pop(root_b, None)
            if reason is not None and root_a not in reasons:
                reasons[root_a] = reason

    def tie(self, atoms_a: np.ndarray, atoms_b: np.ndarray) -> None:
        """Position-wise ties: channel i of one tensor is channel i of the other."""
        for a, b in zip(atoms_a.tolist(), atoms_b.tolist()):
            self.union(a, b)

    def tie_all(self, atoms: np.ndarray) -> None:
        """All of ``atoms`` become one unit (whole conv groups)."""
        first = int(atoms[0])
        for atom in atoms[1:].tolist():
            self.union(first, atom)

    def pin(self, atoms: np.ndarray, reason: str) -> None:
        for atom in atoms.tolist():
            root = self.find(atom)
            self.pin_reasons.setdefault(root, reason)

    def keep(self, atoms: np.ndarray, reason: str) -> None:
        """These atoms' units are always kept; the rest of their group stays prunable."""
        for atom in atoms.tolist():
            self.keep_reasons.setdefault(self.find(atom), reason)

    def pin_tensor(self, name: str, reason: str) -> None:
        info = self.tensors.get(name)
        if info is not None:
            self.pin(info.atoms, reason)

    def roots(self, atoms: np.ndarray) -> np.ndarray:
        """The root of each atom, from a table of every atom's root kept until the next union."""
        if self._root_table is None or self._root_table[0] != self._changes:
            table = np.asarray(self.parent, dtype=np.int64)
            while True:  # pointer jumping: each step halves every path to its root
                jumped = table[table]
                if np.array_equal(jumped, table):
                    break
                table = jumped
            self._root_table = (self._changes, table)
        return self._root_table[1][np.asarray(atoms, dtype=np.int64)]

    def pin_reason(self, atom: int) -> str | None:
        return self.pin_reasons.get(self.find(atom))
