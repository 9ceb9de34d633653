"""The resumable state of one ``compress`` run, kept in ``OUT_DIR/.work``.

A run that is interrupted leaves its search checkpoint, its fine-tuning checkpoint and the results of
finished stages here; the same command resumes. Different settings or another model start afresh.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from agmc_onnx.search.log import atomic_write_bytes

__all__ = ["WorkDirectory", "run_identity"]


def run_identity(model_bytes: bytes, settings: dict) -> dict:
    return {"model_sha1": hashlib.sha1(model_bytes).hexdigest(), **settings}


class WorkDirectory:
    def __init__(self, out_dir: Path, identity: dict, restart: bool = False) -> None:
        self.path = Path(out_dir) / ".work"
        identity_path = self.path / "identity.json"
        stored = json.loads(identity_path.read_text()) if identity_path.exists() else None
        self.resumed = stored == identity and not restart
        if not self.resumed and self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(identity_path, json.dumps(identity, indent=2, sort_keys=True).encode())

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
        atomic_write_bytes(self.path / f"{name}.json", json.dumps(values, indent=2).encode())

    def model_path(self, name: str) -> Path:
        return self.path / f"{name}.onnx"
