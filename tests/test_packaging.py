"""The repository-root folders install as ``agmc_onnx.*``: every package folder must be a regular package."""

from __future__ import annotations

import importlib

import pytest
from trained_models import REPO_ROOT

ROOTS = {"agmc_onnx": "agmc_onnx", "cli": "agmc_onnx.cli", "passes": "agmc_onnx.passes", "models": "agmc_onnx.models"}


def _package_folders():
    for folder, namespace in ROOTS.items():
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            parent = path.parent
            if "__pycache__" not in parent.parts:
                relative = parent.relative_to(REPO_ROOT / folder)
                yield parent, ".".join([namespace, *relative.parts])


@pytest.mark.parametrize("folder, module", sorted(set(_package_folders())), ids=lambda v: str(v))
def test_every_package_folder_has_an_init_and_imports(folder, module):
    # find_packages() in setup.py skips folders without __init__.py: they would be missing from a wheel.
    assert (folder / "__init__.py").exists(), f"{folder} lacks __init__.py"
    assert importlib.import_module(module)
