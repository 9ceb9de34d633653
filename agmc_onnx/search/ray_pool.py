"""Rewards evaluated in parallel on Ray actors (``workers`` > 1 or a cluster address).

The reward function (model, analysis, reward set, calibration batches) goes into the object store once;
every actor receives it in its constructor, so an episode ships only its channel selection. The driver
keeps the reward cache: a kept set evaluated before is not sent again. An episode whose evaluation fails
is sent again (a worker whose process died is first replaced by a fresh actor), at most ``MAX_ATTEMPTS``
times in all; then the search stops with ``WorkerError`` before anything of the round is logged.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence

from agmc_onnx.errors import AgmcError, PreconditionError
from agmc_onnx.plan import ChannelSelection
from agmc_onnx.progress import ProgressFn, report
from agmc_onnx.search.evaluation import WorkerNotice
from agmc_onnx.search.reward import RewardFn, RewardSample, selection_key

__all__ = ["RayEvaluator", "RewardWorker", "WorkerError", "MAX_ATTEMPTS", "connect"]

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # per episode, across fresh workers
CONNECT_TIMEOUT_S = 5.0


class WorkerError(AgmcError):
    """A reward evaluation failed on every worker it was sent to, or Ray cannot be reached."""


class RewardWorker:
    """The actor: holds the reward function it was built with and scores selections with it."""

    def __init__(self, reward_fn: RewardFn) -> None:
        import torch

        torch.set_num_threads(1)  # onnxruntime scores; the reward's torch use (if any) must not oversubscribe
        self.reward_fn = reward_fn

    def evaluate(self, selection: ChannelSelection) -> RewardSample:
        return self.reward_fn(selection)


def _import_ray(workers: int):
    try:
        import ray
    except ImportError:
        raise PreconditionError(
            f"evaluating on {workers} workers needs Ray, which is not installed: "
            "pip install 'agmc-onnx[ray]' (or use one worker)"
        ) from None
    return ray


def _check_reachable(address: str) -> None:
    """Fail fast (one line) on an address nothing listens at, instead of Ray's long connection retries."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise PreconditionError(f"Ray address '{address}' is not HOST:PORT, ray://HOST:PORT or 'auto'")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise WorkerError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def connect(workers: int, address: str | None) -> tuple[object, bool]:
    """Ray, joined to ``address`` or to a local runtime of this machine's cores; True when we started it."""
    ray = _import_ray(workers)
    if address is not None:
        _check_reachable(address)
    if ray.is_initialized():  # a runtime the caller started (and will stop)
        return ray, False
    settings = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address is None:
            ray.init(num_cpus=os.cpu_count() or 1, **settings)
        else:
            ray.init(address=address, **settings)
    except Exception as exc:  # Ray raises plain Exception too (e.g. a raylet start-up timeout)
        raise WorkerError(f"cannot start Ray at {address or 'this machine'}: {str(exc).splitlines()[0]}") from None
    return ray, True


class RayEvaluator:
    """``workers`` reward actors; a round's new kept sets are spread over them as they become free."""

    def __init__(
        self, reward_fn: RewardFn, workers: int, address: str | None, progress: ProgressFn | None
    ) -> None:
        self.ray, self._owns_runtime = connect(workers, address)
        self.progress = progress
        self.cache: dict | None = getattr(reward_fn, "cache", None)
        cpus = float(self.ray.cluster_resources().get("CPU", 1.0))
        self._cpus_per_worker = min(1.0, cpus / workers)
        if workers > cpus:
            self._notice(f"{workers} workers share {cpus:g} cores; each evaluation will run slower")
        self._remote = self.ray.remote(RewardWorker)
        self._reward_ref = self.ray.put(reward_fn)  # shipped once; every actor's constructor resolves it
        self._actors = [self._new_actor() for _ in range(workers)]

    def _notice(self, message: str) -> None:
        logger.info(message)  # the CLI shows the event; a logged warning would say it twice
        report(self.progress, WorkerNotice(message))

    def _new_actor(self):
        return self._remote.options(num_cpus=self._cpus_per_worker).remote(self._reward_ref)

    def evaluate(self, selections: Sequence[ChannelSelection], first_episode: int) -> list[RewardSample]:
        keys = [selection_key(s) for s in selections]
        known = dict(self.cache) if self.cache is not None else {}
        jobs: dict[str, int] = {}  # key -> position of its first occurrence in this round
        for position, key in enumerate(keys):
            if key not in known and key not in jobs:
                jobs[key] = position
        fresh = self._run(
            {key: (selections[p], first_episode + p) for key, p in jobs.items()}
        )  # key -> RewardSample
        samples = []
        for position, key in enumerate(keys):
            if jobs.get(key) == position:
                samples.append(RewardSample(fresh[key].accuracy, False, fresh[key].seconds))
            else:
                value = known[key] if key in known else fresh[key].accuracy
                samples.append(RewardSample(value, True, 0.0))
        if self.cache is not None:
            self.cache.update({key: sample.accuracy for key, sample in fresh.items()})
        return samples

    def _run(self, jobs: dict[str, tuple[ChannelSelection, int]]) -> dict[str, RewardSample]:
        """Each job on a free actor; a failed one goes to a fresh actor, up to ``MAX_ATTEMPTS`` in all."""
        queue = list(jobs)
        attempts = dict.fromkeys(jobs, 0)
        running: dict = {}  # object ref -> (key, actor index)
        free = list(range(len(self._actors)))
        results: dict[str, RewardSample] = {}
        while queue or running:
            while queue and free:
                key, index = queue.pop(0), free.pop(0)
                attempts[key] += 1
                running[self._actors[index].evaluate.remote(jobs[key][0])] = (key, index)
            done, _ = self.ray.wait(list(running), num_returns=1)
            key, index = running.pop(done[0])
            try:
                results[key] = self.ray.get(done[0])
            except self.ray.exceptions.RayError as exc:
                died = isinstance(exc, self.ray.exceptions.RayActorError)
                if died:  # the process is gone (a raised exception leaves a usable actor behind)
                    self._replace(index)
                self._retry_or_fail(key, jobs[key][1], attempts[key], exc, died)
                queue.insert(0, key)
            free.append(index)
        return results

    def _replace(self, index: int) -> None:
        self.ray.kill(self._actors[index], no_restart=True)
        self._actors[index] = self._new_actor()

    def _retry_or_fail(self, key: str, episode: int, attempt: int, exc: Exception, died: bool) -> None:
        cause = _first_line(exc)
        if attempt >= MAX_ATTEMPTS:
            raise WorkerError(
                f"the reward of episode {episode + 1} failed on {attempt} workers (last: {cause}); "
                "the log and checkpoint end at the previous round, so the search can be resumed"
            ) from None
        where = "on a fresh worker" if died else "on the next free worker"
        self._notice(
            f"a worker {'died' if died else 'failed'} evaluating episode {episode + 1} ({cause}); "
            f"retrying {where} ({attempt + 1}/{MAX_ATTEMPTS})"
        )

    def close(self) -> None:
        for actor in self._actors:
            self.ray.kill(actor, no_restart=True)
        self._actors = []
        if self._owns_runtime:
            self.ray.shutdown()


def _first_line(exc: Exception) -> str:
    """The failing worker's own error in one line (Ray wraps it with a traceback)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, type(exc)):
        text = f"{type(cause).__name__}: {cause}"
    else:
        text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]

