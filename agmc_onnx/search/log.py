"""The search's run directory: per-episode JSONL log, atomic checkpoint of everything needed to resume.

Layout of ``run_dir``: ``config.json`` (what was searched), ``episodes.jsonl`` (one record per episode),
``checkpoint.pt`` (policy, agent, RNG states, reward cache and the records so far). The checkpoint is
the source of truth: on resume the log is rewritten from it, so a crash between the two writes loses
nothing and duplicates nothing.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from agmc_onnx.errors import PreconditionError
from agmc_onnx.io import write_bytes_atomic
from agmc_onnx.progress import CountedProgress

__all__ = ["EpisodeRecord", "EpisodeProgress", "RunDirectory"]


@dataclass(frozen=True)
class EpisodeRecord:
    episode: int
    policy: str
    keep_ratios: tuple[float, ...]  # per group, in search order
    actions: tuple[float, ...]
    macs_kept_fraction: float
    cost_kept_fraction: float  # the budgeted cost (MACs, or the latency model's prediction)
    predicted_latency_ms: float | None
    reward: float
    best_reward: float
    cached: bool
    corrected: bool
    exploration_sigma: float
    eval_seconds: float
    episode_seconds: float
    losses: dict

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> EpisodeRecord:
        data = dict(data)
        data["keep_ratios"] = tuple(data["keep_ratios"])
        data["actions"] = tuple(data["actions"])
        return cls(**data)


@dataclass(frozen=True)
class EpisodeProgress(CountedProgress, stage="search", unit="episode"):
    """A ``ProgressEvent`` after every episode of the search."""

    record: EpisodeRecord
    total: int

    @property
    def done(self) -> int:
        return self.record.episode + 1

    @property
    def message(self) -> str:
        r = self.record
        cached = " (cached)" if r.cached else ""
        return (
            f"episode {r.episode + 1}/{self.total} [{r.policy}] reward {100 * r.reward:.1f} %{cached}, "
            f"best {100 * r.best_reward:.1f} %, MACs kept {100 * r.macs_kept_fraction:.1f} %, "
            f"{r.episode_seconds:.1f} s"
        )


class RunDirectory:
    """Reads and writes one search's files."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.log_path = self.path / "episodes.jsonl"
        self.checkpoint_path = self.path / "checkpoint.pt"

    def start(self, identity: dict, resume: bool) -> dict | None:
        """Prepare the directory; return the checkpoint to resume from (None for a fresh start).

        ``identity`` is what must match for a resume (model, budget, policy, seed, ...).
        """
        if resume and self.checkpoint_path.exists():
            stored = json.loads(self.config_path.read_text())
            if stored != identity:
                changed = sorted(k for k in set(stored) | set(identity) if stored.get(k) != identity.get(k))
                raise PreconditionError(
                    f"cannot resume the search in {self.path}: {', '.join(changed)} differ from the stored "
                    "run; "
                    "use the same settings or a new --run-dir"
                )
            # The caller rewrites the log from the checkpoint's records (see the module docstring).
            return torch.load(self.checkpoint_path, weights_only=False)
        write_bytes_atomic(self.config_path, json.dumps(identity, indent=2).encode())
        self.rewrite_log([])
        self.checkpoint_path.unlink(missing_ok=True)
        return None

    def append(self, record: EpisodeRecord) -> None:
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(record.to_json() + "\n")

    def rewrite_log(self, records: list[EpisodeRecord]) -> None:
        write_bytes_atomic(self.log_path, "".join(r.to_json() + "\n" for r in records).encode())

    def save_checkpoint(self, state: dict) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_bytes_atomic(self.checkpoint_path, buffer.getvalue())

    def read_log(self) -> list[EpisodeRecord]:
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text(encoding="utf-8").splitlines()
        return [EpisodeRecord.from_dict(json.loads(line)) for line in lines if line.strip()]
