"""The resumable state of one ``compress`` run, kept in ``OUT_DIR/.work``.

Each stage (baseline, search, pruned model, fine-tuning) stores its result or checkpoint here under an
identity: the model and the settings that stage depends on. A run that is interrupted resumes where it
stopped; a run with changed settings redoes only the stages whose identity changed, and those after them
(a new fine-tuning length keeps the finished search).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

from agmc_onnx.io import write_bytes_atomic

__all__ = ["WorkDirectory", "stage_identities", "STAGES"]

STAGES = ("baseline", "search", "checked", "searched", "finetune")
_STAGE_SETTINGS = {
    "baseline": ("data", "reward_size", "test_size", "seed", "task", "layout", "color", "size", "scale", "mean", "std"),
    "search": ("target", "flops", "latency", "policy", "episodes", "round_to", "warmup_episodes",
               "episodes_per_round"),
    "checked": ("check_latency", "quantize"),  # a latency budget's plan timed as it ships and re-targeted
    "searched": (),
    "finetune": ("finetune_epochs", "finetune_images", "distill"),
}


def stage_identities(model_bytes: bytes, settings: Mapping[str, object]) -> dict[str, dict]:
    """Cumulative identities: each stage's includes every earlier stage's."""
    identity: dict = {"model_sha1": hashlib.sha1(model_bytes).hexdigest()}
    identities = {}
    for stage in STAGES:
        identity = {**identity, **{key: settings[key] for key in _STAGE_SETTINGS[stage]}}
        identities[stage] = identity
    return identities


class WorkDirectory:
    def __init__(self, out_dir: Path, identities: Mapping[str, dict], restart: bool = False) -> None:
        self.path = Path(out_dir) / ".work"
        self.path.mkdir(parents=True, exist_ok=True)
        identity_path = self.path / "identity.json"
        stored = json.loads(identity_path.read_text()) if identity_path.exists() else {}
        self.reused: list[str] = []
        for index, stage in enumerate(STAGES):
            if restart or stored.get(stage) != identities[stage]:
                for later in STAGES[index:]:
                    self._discard(later)
                break
            self.reused.append(stage)
        write_bytes_atomic(identity_path, json.dumps(dict(identities), indent=2, sort_keys=True).encode())

    @property
    def resumed(self) -> bool:
        return bool(self.reused)

    def _discard(self, stage: str) -> None:
        for path in (self.path / f"{stage}.json", self.path / f"{stage}.onnx", self.path / f"{stage}.pt"):
            path.unlink(missing_ok=True)
        if (self.path / stage).is_dir():
            shutil.rmtree(self.path / stage)

    @property
    def search_dir(self) -> Path:
        return self.path / "search"

    @property
    def finetune_checkpoint(self) -> Path:
        return self.path / "finetune.pt"

    def stage(self, name: str) -> dict | None:
        path = self.path / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def save_stage(self, name: str, values: dict) -> None:
        write_bytes_atomic(self.path / f"{name}.json", json.dumps(values, indent=2).encode())

    def model_path(self, name: str) -> Path:
        return self.path / f"{name}.onnx"
