from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """torch's thread pool slows small ops by orders of magnitude when the cores are shared."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def corpus_cache_dir() -> Path:
    """Exports are slow-ish; keep them across runs in the repository's git-ignored cache."""
    path = REPO_ROOT / ".cache" / "corpus"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def ray_runtime():
    """One local Ray runtime (2 CPUs) for every test that needs it: starting Ray takes seconds.

    Its workers see the test folders on their path, so rewards defined in test modules unpickle there.
    """
    import os
    import sys

    import ray

    path = os.pathsep.join(p for p in sys.path if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    yield ray
    ray.shutdown()
