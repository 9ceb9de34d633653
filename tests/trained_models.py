"""Where tests find the trained CIFAR-10 models: the repository's zoo, else the shared folder."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"


def shared_model_path(name: str) -> Path:
    for candidate in (
        REPO_ROOT / "models" / "zoo" / f"cifar10_{name}.onnx",
        SHARED / "models" / f"cifar10_{name}.onnx",
    ):
        if candidate.exists():
            return candidate
    pytest.skip(f"trained model cifar10_{name}.onnx is not available")
