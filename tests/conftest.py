from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def corpus_cache_dir() -> Path:
    """Exports are slow-ish; keep them across runs in the repository's git-ignored cache."""
    path = REPO_ROOT / ".cache" / "corpus"
    path.mkdir(parents=True, exist_ok=True)
    return path


# Re-exported for test modules that import it from here.
from trained_models import shared_model_path  # noqa: E402,F401
