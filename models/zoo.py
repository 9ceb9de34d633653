"""The shipped zoo: trained CIFAR-10 models (ONNX + a JSON of how they were trained) and demo data."""

from __future__ import annotations

import json
from pathlib import Path

from agmc_onnx.errors import ModelLoadError

__all__ = ["ZOO_DIR", "zoo_model_names", "zoo_model_path", "zoo_model_info", "demo_data_path"]

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
_FILES = {
    "resnet20": "cifar10_resnet20.onnx",
    "resnet56": "cifar10_resnet56.onnx",
    "mobilenetv2": "cifar10_mobilenetv2.onnx",
}
_ALIASES = {"mobilenet_v2": "mobilenetv2"}


def zoo_model_names() -> tuple[str, ...]:
    return tuple(_FILES)


def zoo_model_path(name: str) -> Path:
    """Path of the zoo model ``name`` (``resnet20``, ``resnet56``, ``mobilenetv2``)."""
    key = _ALIASES.get(name, name)
    if key not in _FILES:
        raise ModelLoadError(f"no zoo model named {name!r}; the zoo has {', '.join(_FILES)}")
    path = ZOO_DIR / _FILES[key]
    if not path.is_file():
        raise ModelLoadError(f"zoo model {name!r} is missing from the installation: {path}")
    return path


def zoo_model_info(name: str) -> dict:
    """The JSON shipped beside the model: training recipe, parameter count, measured test accuracy."""
    return json.loads(zoo_model_path(name).with_suffix(".json").read_text())


def demo_data_path() -> Path:
    """A folder holding the demo CIFAR-10 subset pair (``cifar10_demo_train.tar.xz``: 2,000 images,
    ``cifar10_demo_test.tar.xz``: 1,000 images); pass it anywhere a dataset path is accepted."""
    return ZOO_DIR
