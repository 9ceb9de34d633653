"""onnxruntime latency on a target profile: single-model statistics and paired A/B speed-up.

Timing is noisy (a baseline median can drift by a third within minutes), so a speed-up claim needs
both models measured in the same process, interleaved A-B-B-A, and a spread next to the ratio.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from agmc_onnx.cost.profiles import TargetProfile, get_profile
from agmc_onnx.cost.session import ModelSource, create_session, model_index_bounds, random_inputs
from agmc_onnx.errors import PreconditionError

__all__ = ["TIMING_TOLERANCE", "LatencyStats", "PairedLatency", "measure_latency", "measure_paired", "latency_stats"]

# One paired timing of an unchanged model moves 2-5 % between runs (benchmarks/results/speed.md), so a model
# measured within this share of a latency budget meets it as far as a timing can tell: the latency check stops
# at such a plan and compress's gate judges the shipped model alike.
TIMING_TOLERANCE = 0.05


@dataclass(frozen=True)
class LatencyStats:
    """Per-inference wall time in milliseconds over ``n_runs`` timed runs (after warm-up)."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    n_runs: int
    target: str
    batch_size: int


@dataclass(frozen=True)
class PairedLatency:
    """``speedup`` = median_a / median_b (> 1: B is faster), the median of per-round ratios, with a
    bootstrap confidence interval [``speedup_low``, ``speedup_high``] of that median."""

    speedup: float
    speedup_low: float
    speedup_high: float
    a: LatencyStats
    b: LatencyStats
    n_rounds: int


def latency_stats(times_ms: Sequence[float], target: str, batch_size: int) -> LatencyStats:
    times = np.asarray(times_ms, dtype=np.float64)
    if times.size == 0:
        raise PreconditionError("no timed runs to summarise")
    return LatencyStats(
        median_ms=float(np.median(times)),
        p90_ms=float(np.percentile(times, 90)),
        mean_ms=float(times.mean()),
        n_runs=int(times.size),
        target=target,
        batch_size=batch_size,
    )


def measure_latency(
    model: ModelSource,
    target: str | TargetProfile = "mobile-cpu",
    *,
    batch_size: int | None = None,
    warmup_runs: int = 10,
    min_runs: int = 50,
    min_seconds: float = 1.0,
    max_runs: int = 2000,
    seed: int = 0,
) -> LatencyStats:
    """Warm up, then time runs until at least ``min_runs`` runs and ``min_seconds`` (at most ``max_runs``)."""
    if not 1 <= min_runs <= max_runs:
        raise PreconditionError(f"need 1 ≤ min_runs ≤ max_runs, got min_runs={min_runs}, max_runs={max_runs}")
    profile = get_profile(target, batch_size)
    session = create_session(model, profile)
    feeds = random_inputs(session, profile.batch_size, seed, model_index_bounds(model))
    _time_runs(session, feeds, warmup_runs)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - started < min_seconds):
        times.extend(_time_runs(session, feeds, min(10, max_runs - len(times))))
    return latency_stats(times, profile.name, _feed_batch(feeds))


def measure_paired(
    model_a: ModelSource,
    model_b: ModelSource,
    target: str | TargetProfile = "mobile-cpu",
    *,
    batch_size: int | None = None,
    n_rounds: int = 20,
    runs_per_block: int = 5,
    warmup_runs: int = 10,
    confidence: float = 0.95,
    seed: int = 0,
    sessions: int = 1,
) -> PairedLatency:
    """Time A and B interleaved A-B-B-A in ``n_rounds`` rounds, so that drift hits both alike. With
    ``sessions`` > 1 the rounds are spread over that many fresh pairs of sessions: on a small model a
    session's memory placement can shift its latency by several per cent for as long as it lives, which
    rounds inside one session do not average out."""
    if n_rounds < 2 or runs_per_block < 1 or not 1 <= sessions <= n_rounds:
        raise PreconditionError(
            f"need n_rounds ≥ 2, runs_per_block ≥ 1 and 1 ≤ sessions ≤ n_rounds, got {n_rounds}, "
            f"{runs_per_block} and {sessions}"
        )
    profile = get_profile(target, batch_size)
    times_a: list[float] = []
    times_b: list[float] = []
    ratios: list[float] = []
    for rounds in np.array_split(np.arange(n_rounds), sessions):
        session_a, session_b = create_session(model_a, profile), create_session(model_b, profile)
        feeds_a = random_inputs(session_a, profile.batch_size, seed, model_index_bounds(model_a))
        feeds_b = random_inputs(session_b, profile.batch_size, seed, model_index_bounds(model_b))
        _time_runs(session_a, feeds_a, warmup_runs)
        _time_runs(session_b, feeds_b, warmup_runs)
        for _ in rounds:
            round_a = _time_runs(session_a, feeds_a, runs_per_block)
            round_b = _time_runs(session_b, feeds_b, runs_per_block)
            round_b += _time_runs(session_b, feeds_b, runs_per_block)
            round_a += _time_runs(session_a, feeds_a, runs_per_block)
            ratios.append(float(np.median(round_a) / np.median(round_b)))
            times_a += round_a
            times_b += round_b
    low, high = _bootstrap_median_ci(np.asarray(ratios), confidence, seed)
    return PairedLatency(
        speedup=float(np.median(ratios)),
        speedup_low=low,
        speedup_high=high,
        a=latency_stats(times_a, profile.name, _feed_batch(feeds_a)),
        b=latency_stats(times_b, profile.name, _feed_batch(feeds_b)),
        n_rounds=n_rounds,
    )


def _time_runs(session: ort.InferenceSession, feeds: Mapping[str, np.ndarray], n_runs: int) -> list[float]:
    run, clock = session.run, time.perf_counter
    times = []
    for _ in range(n_runs):
        started = clock()
        run(None, feeds)
        times.append((clock() - started) * 1000.0)
    return times


def _feed_batch(feeds: Mapping[str, np.ndarray]) -> int:
    first = next(iter(feeds.values()))
    return int(first.shape[0]) if first.ndim else 1


def _bootstrap_median_ci(ratios: np.ndarray, confidence: float, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    resamples = rng.choice(ratios, size=(2000, ratios.size), replace=True)
    medians = np.median(resamples, axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    return float(np.percentile(medians, tail)), float(np.percentile(medians, 100.0 - tail))
