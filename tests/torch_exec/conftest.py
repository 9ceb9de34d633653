"""Corpus fixtures for the torch executor tests: exports cached under the repository's ``.cache/corpus``."""

from __future__ import annotations

from pathlib import Path

import pytest
from exec_testing import CORPUS_CACHE
from trained_models import shared_model_path

from agmc_onnx.io import load_model
from agmc_onnx.models.corpus import export_corpus_model


@pytest.fixture(scope="session")
def corpus_model_path():
    """A function (name, fused_bn) -> path of the cached export; skips if the builder is missing."""

    def get(name: str, fused_bn: bool) -> Path:
        try:
            return export_corpus_model(name, fused_bn, cache_dir=CORPUS_CACHE)
        except ModuleNotFoundError as exc:
            pytest.skip(f"corpus builder for {name} is not available: {exc}")

    return get


@pytest.fixture(scope="session")
def resnet20_model():
    return load_model(shared_model_path("resnet20"))  # models/zoo first, then ../shared/models
