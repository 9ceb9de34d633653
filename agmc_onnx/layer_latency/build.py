"""Build a model's latency predictor: sweep each group's kept count to find its staircase, measure the
per-layer grid on the fast steps, and measure the whole model once for the overhead."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from agmc_onnx.analysis import ModelAnalysis
from agmc_onnx.cost import get_profile, measure_paired
from agmc_onnx.cost.session import check_target_available
from agmc_onnx.errors import PreconditionError
from agmc_onnx.groups.find import ChannelGroup
from agmc_onnx.groups.macs_model import MacsModel
from agmc_onnx.importance import ChannelScores, channel_scores
from agmc_onnx.layer_latency.micro import PRECISIONS, measure_point
from agmc_onnx.layer_latency.predictor import GroupStaircase, LayerLatencyModel
from agmc_onnx.layer_latency.signature import LayerSlot, layer_slots
from agmc_onnx.layer_latency.table import TableCache, current_identity
from agmc_onnx.plan import PruningPlan, on_round_grid, select_channels
from agmc_onnx.prune import apply_selection

__all__ = [
    "TableConfig", "build_latency_model", "calibrate", "calibration_plans", "profile_model", "refit",
    "shipping_form", "ProgressCallback",
]

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, str], None]  # (points done, points to measure, phase)


@dataclass(frozen=True)
class TableConfig:
    target: str = "mobile-cpu"
    precision: str = "fp32"  # one of micro.PRECISIONS
    lower_bound: float = 0.2  # smallest keep ratio the staircase sweeps
    max_sweep: int = 64  # kept counts swept per group at most (a larger group: multiples of 8 only)
    max_fast_steps: int = 10  # grid points per axis at most
    step_tolerance: float = 0.03  # a count is a fast step if it beats every larger count by this fraction
    runs: int = 25  # timed runs per table point at most (fewer once the median is stable)
    calibration_rounds: int = 10  # A-B-B-A rounds timing each calibration model against the full one
    calibration_plans: int = 12  # pruned models the coefficients are fitted on (uniform widths, then random)
    # Calibration models keep channel counts on this grid, the counts the search chooses from (its --round-to):
    # a width off the grid can cost more than its layer's table says, and fitting on such widths biased the
    # predictor for the plans a search makes (benchmarks/results/speed_runs/grid_steps/speed.md). 1: every fast step.
    round_to: int = 1
    cache_dir: str | os.PathLike | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise PreconditionError(f"unknown table precision {self.precision!r}; choose one of {PRECISIONS}")


def build_latency_model(
    analysis: ModelAnalysis,
    config: TableConfig = TableConfig(),
    progress: ProgressCallback | None = None,
    ship: Callable[[onnx.ModelProto], onnx.ModelProto] | None = None,
    reference: onnx.ModelProto | None = None,
    scores: ChannelScores | None = None,
) -> LayerLatencyModel:
    """Tables for every tabulated layer of ``analysis`` (cached), staircases, and the coefficients fitted
    on whole models in the form they ship (``ship`` turns a pruned fp32 model into it, e.g. its INT8
    quantization; default: as is). With ``reference`` (e.g. the fp32 original), its latency is also timed
    paired against the shipped full model and placed in the tables' time base (``reference_ms``).
    ``scores``: the unit scores selection keeps by (default: L1), for the MACs model and calibration."""
    ship = ship or (lambda model: model)
    profile = get_profile(config.target)
    check_target_available(profile)
    identity = current_identity(profile, config.precision)
    cache = TableCache(identity, config.cache_dir)
    macs = MacsModel.from_analysis(analysis, scores)
    slots, untabulated = layer_slots(analysis, macs)
    if not slots:
        raise PreconditionError("the model has no Conv, Gemm or MatMul layer whose latency can be tabulated")
    groups = {g.id: g for g in analysis.prunable_groups}
    sweeps = {gid: _sweep_counts(groups[gid].n_units, groups[gid].unit_width, config) for gid in macs.group_ids}
    report = progress or (lambda done, total, phase: None)

    def measure(points: set[tuple[LayerSlot, int, int]], phase: str) -> None:
        todo = sorted({(s.signature, ci, co) for s, ci, co in points
                       if (ci, co) not in cache.table(s.signature).entries}, key=lambda p: (p[0].digest, p[1], p[2]))
        for done, (signature, ci, co) in enumerate(todo):
            report(done, len(todo), phase)
            cache.table(signature).entries[(ci, co)] = measure_point(
                signature, ci, co, profile, config.precision, runs=config.runs
            )
        report(len(todo), len(todo), phase)
        cache.save()

    measure(set(_sweep_points(macs, slots, sweeps)), "staircases")
    staircases = tuple(_staircase(macs, slots, cache, gid, counts, config) for gid, counts in sweeps.items())
    axes = _grid_axes(macs, slots, staircases)
    grid = {(s, ci, co) for s in slots for ci in axes[s.name][0] for co in axes[s.name][1]
            if s.signature.per_group is None or ci == co}
    measure(grid, "grid")
    tables = {s.signature.digest: cache.table(s.signature) for s in slots}
    raw = LayerLatencyModel(macs, slots, tables, axes, 0.0, 0.0, identity, untabulated, staircases)
    report(0, 1, "whole model")
    fitted = calibrate(analysis, raw, ship, profile, config, reference, scores)
    report(1, 1, "whole model")
    log.info("latency table: %d layers, %d signatures, overhead %.3f ms, scale %.2f, MACs term %.3f ms",
             len(slots), len(tables), fitted.overhead_ms, fitted.scale, fitted.macs_ms)
    return fitted


def calibration_plans(raw: LayerLatencyModel, count: int, seed: int = 1_000_003,
                      groups: Mapping[str, ChannelGroup] | None = None, round_to: int = 1) -> list[dict[str, float]]:
    """Keep fractions of the calibration models: every group at its smallest fast step of at least half,
    a third and two thirds of its width (the spread the scale is read from), then random fast-step plans (a
    seed apart from any benchmark's plans: they tell the table term from the MACs term). With ``round_to`` > 1
    (``groups``: by id) only the fast steps on that grid and the full width."""
    def steps(staircase) -> list[int]:
        if round_to == 1:
            return list(staircase.fast_counts)
        group = groups[staircase.group_id]
        return sorted({c for c in staircase.fast_counts if on_round_grid(group, c, round_to)} | {group.n_units})

    allowed = {s.group_id: steps(s) for s in raw.staircases}

    def uniform(level: float) -> dict[str, float]:
        return {s.group_id: min(c for c in allowed[s.group_id] if c >= level * s.counts[-1]) / s.counts[-1]
                for s in raw.staircases}

    rng = np.random.default_rng(seed)
    plans = [uniform(level) for level in (0.5, 0.33, 0.67)]
    while len(plans) < count:
        plans.append({s.group_id: int(rng.choice(allowed[s.group_id])) / s.counts[-1] for s in raw.staircases})
    return plans[:count]


def calibrate(analysis, raw: LayerLatencyModel, ship, profile, config: TableConfig, reference=None, scores=None):
    """Overhead, scale and MACs term by least squares on the full model and ``config.calibration_plans``
    pruned ones, each timed paired against the full model (per-round ratios: robust to drift)."""
    full = ship(analysis.model)
    scores = scores or channel_scores(analysis)
    measured, features, full_ms = [], [], []
    groups = {g.id: g for g in analysis.groups}
    for keep in calibration_plans(raw, config.calibration_plans, groups=groups, round_to=config.round_to):
        plan = PruningPlan(keep)
        pruned, _ = apply_selection(analysis, select_channels(plan, analysis.groups, scores))
        paired = measure_paired(full, ship(pruned), profile, n_rounds=config.calibration_rounds)
        full_ms.append(paired.a.median_ms)
        measured.append(1.0 / paired.speedup)
        features.append(raw.features(raw.keep_array(keep)))
    full_median = float(np.median(full_ms))
    reference_ms = None
    if reference is not None:
        reference_ms = full_median * measure_paired(reference, full, profile,
                                                    n_rounds=config.calibration_rounds).speedup
    ones = np.ones(len(raw.macs.group_ids))
    base = dataclasses.replace(raw, reference_ms=reference_ms, measured_full_ms=full_median)
    return _fitted(base, ((raw.features(ones), 1.0, 1.0), *((f, m, 1.0) for f, m in zip(features, measured))))


def refit(model: LayerLatencyModel, keep, measured_ms: float, weight: float = 3.0) -> LayerLatencyModel:
    """``model`` fitted again with one more measured model: ``keep`` (e.g. the plan a search chose) timed at
    ``measured_ms`` in the model's time base (paired against the full model). Weighted like the full model,
    it pulls the predictor towards what was measured near the budget, where a plan is chosen."""
    point = (model.features(model.keep_array(keep)), measured_ms / model.measured_full_ms, weight)
    return _fitted(model, (*model.calibration_points, point))


def _fitted(model: LayerLatencyModel, points) -> LayerLatencyModel:
    """``model`` with its coefficients fitted on ``points`` ((features, ratio to the full model, weight); the
    full model first). The full model is one point among the others, not pinned: pruned models measure
    faster than a line through it says (any cut leaves the full model's regime: other kernels and layouts),
    so pinning biased every pruned plan (ResNet-20 fp32: 6.5 → 5.0 % median error against the mean of three
    runs). Its measured latency stays the budget's reference (``measured_full_ms``)."""
    full_ms = model.measured_full_ms
    overhead, scale, macs_ms = _fit([p[0] for p in points], [p[1] for p in points], full_ms, [p[2] for p in points])
    return dataclasses.replace(model, overhead_ms=overhead, scale=scale, macs_ms=macs_ms,
                               calibration_ms=tuple(full_ms * p[1] for p in points), calibration_points=tuple(points))


def _fit(features, ratios, full_ms: float, weights=None) -> tuple[float, float, float]:
    """(overhead, scale, MACs term) with scale in [0.25, 2] and a non-negative MACs term; with too few or
    too alike models, or a negative MACs term, the MACs term is dropped (overhead + scale · Σ table). The
    scale goes well below 1 for QDQ models (0.53-0.57 on the zoo models, 0.41 on MobileNetV2 at 224): a lone
    operator's table entry carries its own Quantize/DequantizeLinear, which inside the network are shared."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(ratios, dtype=np.float64) * full_ms
    if weights is None:
        weights = [1.0] * len(y)
    weights = np.asarray(weights, dtype=np.float64)
    if len(y) >= 4:
        design = np.column_stack([np.ones(len(y)), x[:, 0], x[:, 1] * full_ms])
        coef = np.linalg.lstsq(design * weights[:, None], y * weights, rcond=None)[0]
        if 0.25 <= coef[1] <= 2.0 and coef[2] >= 0.0:
            return float(coef[0]), float(coef[1]), float(coef[2] * full_ms)
    spread = x[:, 0].max() - x[:, 0].min()
    scale = 1.0
    if spread > 0.05 * x[0, 0]:
        design = np.column_stack([np.ones(len(y)), x[:, 0]])
        fitted = float(np.linalg.lstsq(design * weights[:, None], y * weights, rcond=None)[0][1])
        scale = float(np.clip(fitted, 0.25, 2.0))
        if scale != fitted:
            log.warning("latency calibration: scale %.2f clipped to %.2f (noisy timing?)", fitted, scale)
    return float(np.average(y - scale * x[:, 0], weights=weights)), scale, 0.0


def _sweep_counts(n_units: int, unit_width: int, config: TableConfig) -> tuple[int, ...]:
    """Every count from the lower bound, or for a group larger than ``max_sweep``, multiples of 8 channels
    only (evenly thinned to ``max_sweep``): between two multiples the vector kernels pad to the next one, so
    the staircase's steps sit there and counts in between cost time without being faster."""
    lowest = max(1, math.ceil(config.lower_bound * n_units - 1e-9))
    counts = set(range(lowest, n_units + 1))
    if len(counts) > config.max_sweep:
        step = max(1, 8 // math.gcd(8, unit_width))
        aligned = list(range(math.ceil(lowest / step) * step, n_units + 1, step)) or [n_units]
        picks = np.linspace(0, len(aligned) - 1, min(len(aligned), config.max_sweep - 1)).round().astype(int)
        counts = {aligned[i] for i in picks} | {n_units}
    return tuple(sorted(counts))


def _keep_with(macs: MacsModel, group_id: str, fraction: float) -> np.ndarray:
    keep = np.ones(len(macs.group_ids))
    keep[macs.group_ids.index(group_id)] = fraction
    return keep


def _touching(macs: MacsModel, slots: Iterable[LayerSlot], group_id: str) -> list[LayerSlot]:
    col = macs.group_ids.index(group_id)
    return [s for s in slots if macs.in_share[s.row, col] > 0 or macs.out_share[s.row, col] > 0]


def _sweep_points(macs: MacsModel, slots, sweeps) -> Iterable[tuple[LayerSlot, int, int]]:
    for slot in slots:
        yield (slot, *slot.counts(macs.kept_shares(np.ones(len(macs.group_ids)))))
    for group_id, counts in sweeps.items():
        touched = _touching(macs, slots, group_id)
        for count in counts:
            shares = macs.kept_shares(_keep_with(macs, group_id, count / counts[-1]))
            for slot in touched:
                yield (slot, *slot.counts(shares))


def _staircase(macs, slots, cache: TableCache, group_id: str, counts, config: TableConfig) -> GroupStaircase:
    touched = _touching(macs, slots, group_id)
    latency = []
    for count in counts:
        shares = macs.kept_shares(_keep_with(macs, group_id, count / counts[-1]))
        latency.append(sum(cache.table(s.signature).entries[s.counts(shares)] for s in touched))
    fast, best = [], math.inf
    for count, ms in sorted(zip(counts, latency), reverse=True):
        if ms < best * (1.0 - config.step_tolerance) or count == counts[-1]:
            fast.append(count)
            best = min(best, ms)
    fast = sorted(fast)
    if len(fast) > config.max_fast_steps:
        picks = np.linspace(0, len(fast) - 1, config.max_fast_steps).round().astype(int)
        fast = sorted({fast[i] for i in picks})
    return GroupStaircase(group_id, tuple(counts), tuple(float(v) for v in latency), tuple(fast))


def _grid_axes(macs, slots, staircases) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    full = macs.kept_shares(np.ones(len(macs.group_ids)))
    axes: dict[str, tuple[set[int], set[int]]] = {}
    for slot in slots:
        ci, co = slot.counts(full)
        axes[slot.name] = ({ci}, {co})
    for staircase in staircases:
        for slot in _touching(macs, slots, staircase.group_id):
            for count in staircase.fast_counts:
                keep = _keep_with(macs, staircase.group_id, count / staircase.counts[-1])
                ci, co = slot.counts(macs.kept_shares(keep))
                axes[slot.name][0].add(ci)
                axes[slot.name][1].add(co)
    result = {}
    for name, (ins, outs) in axes.items():
        both = tuple(sorted(ins | outs))
        grouped = next(s for s in slots if s.name == name).signature.per_group is not None
        result[name] = (both, both) if grouped else (tuple(sorted(ins)), tuple(sorted(outs)))
    return result


def profile_model(
    model: onnx.ModelProto, config: TableConfig = TableConfig(), progress: ProgressCallback | None = None
) -> LayerLatencyModel:
    """Analyse ``model`` and build its latency predictor in ``config.precision``."""
    from agmc_onnx.analysis import analyze_model

    analysis = analyze_model(model)
    return build_latency_model(analysis, config, progress, shipping_form(analysis, config.precision))


def shipping_form(
    analysis: ModelAnalysis, precision: str
) -> Callable[[onnx.ModelProto], onnx.ModelProto] | None:
    """For an INT8 precision, the function that quantizes a (pruned) model in that form, calibrated on random
    inputs (ranges do not change latency); None for fp32."""
    if precision == "fp32":
        return None
    from agmc_onnx.quantize import quantize_model

    initializers = {init.name for init in analysis.model.graph.initializer}
    name = next(v.name for v in analysis.model.graph.input if v.name not in initializers)
    calibration = [np.random.default_rng(0).standard_normal([1, *analysis.shapes[name][1:]]).astype(np.float32)]
    quant_format = precision.removeprefix("int8-")

    def ship(pruned: onnx.ModelProto) -> onnx.ModelProto:
        return quantize_model(pruned, calibration, quant_format).model

    return ship
