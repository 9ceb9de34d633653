from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def corpus_cache_dir() -> Path:
    """Exports are slow-ish; keep them across runs in the repository's git-ignored cache."""
    path = REPO_ROOT / ".cache" / "corpus"
    path.mkdir(parents=True, exist_ok=True)
    return path


def shared_model_path(name: str) -> Path:
    """A trained CIFAR-10 model: the repository's zoo copy when present, else the shared folder."""
    for candidate in (REPO_ROOT / "models" / "zoo" / f"cifar10_{name}.onnx", SHARED / "models" / f"cifar10_{name}.onnx"):
        if candidate.exists():
            return candidate
    pytest.skip(f"trained model cifar10_{name}.onnx is not available")
