"""Channel importance as a plug-in: one method from a channel group to one score per unit.

Selection keeps the highest-scoring units of each group (``plan.select_channels``). Every criterion sees
the whole group, producers and consumers together: a unit's score sums over every weight slice that
belongs to it (the producer's output filters, each consumer's input slices), as Torch-Pruning's
group importance does.

- ``l1`` / ``l2``: magnitude of those weights.
- ``random``: a seeded draw (the baseline every criterion must beat).
- ``taylor``: first-order Taylor estimate of the loss change when the unit is removed,
  ``Σ |w · ∂L/∂w|`` with gradients accumulated through the torch executor on a few labelled batches.
- ``reconstruction``: greedy, ThiNet-style removal order by what the next layers lose on calibration
  images (``agmc_onnx.reconstruct.importance``).
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from onnx import numpy_helper

from agmc_onnx.analysis import ModelAnalysis
from agmc_onnx.errors import PlanError
from agmc_onnx.groups.find import ChannelGroup
from agmc_onnx.groups.flow import SliceConstant

__all__ = [
    "Importance",
    "MagnitudeImportance",
    "RandomImportance",
    "TaylorImportance",
    "ChannelScores",
    "IMPORTANCE_NAMES",
    "DATA_IMPORTANCE",
    "importance_by_name",
    "build_importance",
    "channel_scores",
    "root_sums",
]

ChannelScores = Mapping[str, np.ndarray]  # group id -> one score per unit

IMPORTANCE_NAMES = ("l1", "l2", "random", "taylor", "reconstruction")
DATA_IMPORTANCE = frozenset({"taylor", "reconstruction"})  # criteria that need calibration images


class Importance(abc.ABC):
    """``importance(analysis, group) -> scores``: one non-negative score per unit, higher means keep."""

    name: str = ""

    @abc.abstractmethod
    def __call__(self, analysis: ModelAnalysis, group: ChannelGroup) -> np.ndarray:
        """Scores of ``group``'s units (shape ``[group.n_units]``)."""


def root_sums(
    analysis: ModelAnalysis, values_of: Callable[[str], np.ndarray], power: int = 1
) -> dict[int, float]:
    """Σ |v|^power over every weight slice of each unit root, where ``values_of(initializer)`` gives v.

    Producer weights are sliced along their output axis, consumer weights along their input axis; a
    position of the sliced tensor belongs to the unit of its channel's root. Each weight is read once for
    all of its slicings (one weight in memory at a time).
    """
    nodes = {node.name: node for node in analysis.model.graph.node}
    by_weight: dict[str, list[tuple[int, SliceConstant]]] = {}
    for index, edit in enumerate(analysis.flow.edits):
        if isinstance(edit, SliceConstant) and edit.is_weight:
            by_weight.setdefault(nodes[edit.node].input[edit.input_index], []).append((index, edit))
    parts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for name, edits in by_weight.items():
        values = values_of(name)
        for index, edit in edits:
            roots = analysis.flow.roots(analysis.flow.tensors[edit.tensor].atoms)
            per_position = _position_sums(values, edit.axis, edit.groups, power)
            if len(roots) == len(per_position):  # else a whole-group conv weight's rows: the output edit's
                parts[index] = (roots, per_position)
        del values
    if not parts:
        return {}
    # bincount adds each bin's values in input order from 0.0: the sums of a loop over positions, in edit order
    ordered = [parts[index] for index in sorted(parts)]
    unique, where = np.unique(np.concatenate([roots for roots, _ in ordered]), return_inverse=True)
    totals = np.bincount(where, weights=np.concatenate([sums for _, sums in ordered]), minlength=len(unique))
    return dict(zip(unique.tolist(), totals.tolist()))


def _position_sums(values: np.ndarray, axis: int, groups: int, power: int) -> np.ndarray:
    """Σ |v|^power over everything but ``axis``; a grouped Conv input's rows split by group, one sum per
    input position."""
    if groups == 1:
        return _slice_sums(values, axis, power)
    magnitude = np.power(np.abs(np.asarray(values, dtype=np.float64)), power)
    per_group = magnitude.reshape(groups, magnitude.shape[0] // groups, magnitude.shape[1], -1)  # axis is 1
    return per_group.sum(axis=(1, 3)).reshape(-1)


_BLOCK = 1 << 16  # float64 elements of the conversion buffer (allocated once per weight)


def _slice_sums(values: np.ndarray, axis: int, power: int = 1) -> np.ndarray:
    """Σ |v|^power in float64 over each slice of ``values`` along ``axis``, a block at a time.

    The weight is read in its own memory order, a block of contiguous rows at a time converted into one
    float64 buffer allocated once: no float64 copy of a whole (possibly gigabyte) weight, no transposed
    copy, no fresh pages per block. Along the first axis each slice is one contiguous row and is summed as
    one; along another axis the rows' column sums add up block by block, then each slice's columns.
    """
    values = np.ascontiguousarray(values)
    count = values.shape[axis]
    outer = int(np.prod(values.shape[:axis], dtype=np.int64))
    inner = int(np.prod(values.shape[axis + 1 :], dtype=np.int64))
    sums = np.zeros(count)
    if not values.size:
        return sums
    columns = np.zeros(count * inner) if axis else None  # along another axis: column sums of the rows
    rows = values.reshape(outer, count * inner) if axis else values.reshape(count, inner)
    width = rows.shape[1]
    step = max(1, _BLOCK // width)
    buffer = np.empty(min(step, rows.shape[0]) * width)
    for start in range(0, rows.shape[0], step):
        source = rows[start : start + step]
        block = buffer[: source.size].reshape(source.shape)
        np.copyto(block, source)
        np.abs(block, out=block)
        if power != 1:
            np.power(block, power, out=block)
        if axis:
            columns += block.sum(axis=0)
        else:
            sums[start : start + source.shape[0]] = block.sum(axis=1)
    return columns.reshape(count, inner).sum(axis=1) if axis else sums


class _PerRootImportance(Importance):
    """An importance whose unit scores are per-root sums computed once per analysed model."""

    def __init__(self) -> None:
        self._cache: tuple[ModelAnalysis, dict[int, float]] | None = None

    @abc.abstractmethod
    def _root_scores(self, analysis: ModelAnalysis) -> dict[int, float]:
        """Score of every unit root of the model."""

    def __call__(self, analysis: ModelAnalysis, group: ChannelGroup) -> np.ndarray:
        if self._cache is None or self._cache[0] is not analysis:
            self._cache = (analysis, self._root_scores(analysis))
        sums = self._cache[1]
        return np.array([sums.get(int(root), 0.0) for root in group.unit_roots.tolist()])


def _initializers(analysis: ModelAnalysis) -> Callable[[str], np.ndarray]:
    """Each initializer's values, converted when asked (one weight in memory at a time)."""
    tensors = {init.name: init for init in analysis.model.graph.initializer}
    return lambda name: numpy_helper.to_array(tensors[name])


class MagnitudeImportance(_PerRootImportance):
    """L1 (``p=1``) or L2 (``p=2``) norm of all weights of each unit."""

    def __init__(self, p: int = 1) -> None:
        super().__init__()
        if p not in (1, 2):
            raise PlanError(f"magnitude importance takes p = 1 or 2, got {p}")
        self.p = p
        self.name = f"l{p}"

    def _root_scores(self, analysis: ModelAnalysis) -> dict[int, float]:
        sums = root_sums(analysis, _initializers(analysis), self.p)
        return sums if self.p == 1 else {root: float(np.sqrt(v)) for root, v in sums.items()}


class RandomImportance(Importance):
    """Seeded random scores, the same for the same group and seed."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def __call__(self, analysis: ModelAnalysis, group: ChannelGroup) -> np.ndarray:
        digest = int(hashlib.sha1(f"{self.seed}:{group.id}".encode()).hexdigest()[:8], 16)
        return np.random.default_rng(digest).random(group.n_units)


class TaylorImportance(_PerRootImportance):
    """First-order Taylor: Σ |w · ∂L/∂w| over the unit's weights, gradients of the cross-entropy on
    ``batches`` (model inputs) and ``labels`` through the torch executor, computed once per model."""

    name = "taylor"

    def __init__(
        self, batches: Sequence[np.ndarray], labels: Sequence[np.ndarray], loss: Callable | None = None
    ) -> None:
        super().__init__()
        self.loss = loss  # (logits, labels) -> scalar tensor; cross-entropy by default
        if not batches:
            raise PlanError("taylor importance needs at least one labelled calibration batch")
        self.batches = tuple(batches)
        self.labels = tuple(labels)

    def _root_scores(self, analysis: ModelAnalysis) -> dict[int, float]:
        products = _taylor_products(analysis, self.batches, self.labels, self.loss)
        return root_sums(analysis, products.__getitem__, 1)


def _taylor_products(
    analysis: ModelAnalysis,
    batches: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    loss_fn: Callable | None = None,
) -> dict[str, np.ndarray]:
    """w · Σ_batches ∂L/∂w for every trainable initializer, by ONNX name."""
    import torch

    from agmc_onnx.torch_exec import OnnxModule

    loss_fn = loss_fn or torch.nn.functional.cross_entropy
    module = OnnxModule(analysis.model).eval()
    for batch, label in zip(batches, labels):
        logits = module(torch.from_numpy(np.ascontiguousarray(batch)))
        loss_fn(logits, torch.from_numpy(np.asarray(label, dtype=np.int64))).backward()
    products = {}
    for name, parameter in module.onnx_parameters().items():
        grad = parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
        products[name] = (parameter.detach() * grad).numpy()
    return products


def importance_by_name(name: str, seed: int = 0) -> Importance:
    """The data-free criteria by name; ``taylor`` and ``reconstruction`` must be built with data."""
    if name == "l1":
        return MagnitudeImportance(1)
    if name == "l2":
        return MagnitudeImportance(2)
    if name == "random":
        return RandomImportance(seed)
    if name in DATA_IMPORTANCE:
        raise PlanError(
            f"importance '{name}' needs calibration images; give a dataset (e.g. --reconstruct DATA or "
            "--calibrate DATA) so it can be computed"
        )
    raise PlanError(f"importance '{name}' is unknown; use one of {', '.join(IMPORTANCE_NAMES)}")


def build_importance(
    name: str, batches: Sequence[np.ndarray] = (), labels: Sequence[np.ndarray] = (), seed: int = 0
) -> Importance:
    """Any criterion by name; ``batches`` (model inputs) and ``labels`` feed those that need data."""
    if name == "taylor" and batches:
        return TaylorImportance(batches, labels)
    if name == "reconstruction" and batches:
        from agmc_onnx.reconstruct.importance import ReconstructionImportance

        return ReconstructionImportance(batches, seed=seed)
    return importance_by_name(name, seed)


def channel_scores(analysis: ModelAnalysis, importance: Importance | str = "l1") -> dict[str, np.ndarray]:
    """Scores of every prunable group's units under ``importance``."""
    if isinstance(importance, str):
        importance = importance_by_name(importance)
    scores = {}
    for group in analysis.prunable_groups:
        values = np.asarray(importance(analysis, group), dtype=np.float64)
        if values.shape != (group.n_units,) or not np.all(np.isfinite(values)):
            raise PlanError(
                f"importance '{importance.name}' gave group {group.id} scores of shape {values.shape} "
                f"(expected ({group.n_units},), all finite)"
            )
        scores[group.id] = values
    return scores
