"""Preprocessing spec (how pixels become model input) and the functions that apply it.

A model states its spec in ``metadata_props["preprocessing"]`` as JSON, e.g.
``{"layout": "NCHW", "color": "RGB", "size": [32, 32], "scale": 1/255, "mean": [...], "std": [...]}``:
pixel -> pixel·scale, then (x − mean)/std per channel. ``size`` is [height, width].
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from agmc_onnx.documents import json_object
from agmc_onnx.errors import DataError

__all__ = [
    "PreprocessSpec",
    "spec_from_metadata",
    "spec_from_model",
    "labels_from_metadata",
    "model_metadata",
    "model_input_shape",
    "check_images_fit",
    "check_spec_fits_input",
    "to_model_input",
    "METADATA_KEY",
]

log = logging.getLogger(__name__)

METADATA_KEY = "preprocessing"
_LAYOUTS = ("NCHW", "NHWC")
_COLORS = {"RGB": 3, "BGR": 3, "L": 1}
Dim = int | str | None


@dataclass(frozen=True)
class PreprocessSpec:
    """How uint8 pixels become the model's float input. ``size`` is (height, width) or None (keep)."""

    layout: str = "NCHW"
    color: str = "RGB"
    size: tuple[int, int] | None = None
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.layout not in _LAYOUTS:
            raise DataError(f"preprocessing layout must be one of {_LAYOUTS}, got {self.layout!r}")
        if self.color not in _COLORS:
            raise DataError(f"preprocessing color must be one of {tuple(_COLORS)}, got {self.color!r}")
        if self.size is not None and (len(self.size) != 2 or min(self.size) <= 0):
            raise DataError(f"preprocessing size must be [height, width] > 0, got {list(self.size)}")
        if len(self.mean) != self.n_channels or len(self.std) != self.n_channels:
            raise DataError(
                f"preprocessing for {self.color} needs {self.n_channels} mean and std values, "
                f"got {len(self.mean)} mean and {len(self.std)} std"
            )
        if any(s == 0 for s in self.std):
            raise DataError(f"preprocessing std must not contain 0, got {list(self.std)}")

    @property
    def n_channels(self) -> int:
        return _COLORS[self.color]

    def to_json(self) -> str:
        """The metadata_props form (the same format the shared models carry)."""
        payload = {
            "layout": self.layout,
            "color": self.color,
            "size": list(self.size) if self.size else None,
            "scale": self.scale,
            "mean": list(self.mean),
            "std": list(self.std),
        }
        return json.dumps({k: v for k, v in payload.items() if v is not None})

    @classmethod
    def from_json(cls, text: str, source: str = "metadata") -> PreprocessSpec:
        what = f"{source}: preprocessing"
        raw = json_object(text, DataError, f"{what} is not valid JSON", f"{what} must be a JSON object")
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            log.warning("%s: ignoring unknown preprocessing keys %s", source, sorted(unknown))
        try:
            return cls(
                layout=str(raw.get("layout", "NCHW")),
                color=str(raw.get("color", "RGB")),
                size=tuple(int(v) for v in raw["size"]) if raw.get("size") else None,
                scale=float(raw.get("scale", 1.0 / 255.0)),
                mean=tuple(float(v) for v in raw.get("mean", (0.0, 0.0, 0.0))),
                std=tuple(float(v) for v in raw.get("std", (1.0, 1.0, 1.0))),
            )
        except (TypeError, ValueError) as exc:
            raise DataError(f"{source}: malformed preprocessing entry: {exc}") from None

    def replace(self, **changes: object) -> PreprocessSpec:
        """A copy with the non-None ``changes`` applied (None means "keep")."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def model_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {prop.key: prop.value for prop in model.metadata_props}


def model_input_shape(model: onnx.ModelProto) -> tuple[Dim, ...]:
    """Shape of the first graph input that is not an initializer (dim_param names for dynamic dims)."""
    initializers = {init.name for init in model.graph.initializer}
    for value in model.graph.input:
        if value.name not in initializers:
            dims = value.type.tensor_type.shape.dim
            return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims)
    raise DataError("the model has no graph input")


def spec_from_metadata(
    metadata: Mapping[str, str], input_shape: Sequence[Dim], **overrides: object
) -> PreprocessSpec:
    """The spec from model metadata, else guessed from the input shape; ``overrides`` win.

    ``overrides`` are PreprocessSpec fields; None values are ignored. Without metadata the layout is
    detected from the input shape when only one of N×C×H×W and N×H×W×C fits (an explicit ``layout``
    override settles the rest).
    """
    if METADATA_KEY in metadata:
        spec = PreprocessSpec.from_json(metadata[METADATA_KEY])
    else:
        spec = _guess_spec(input_shape, overrides.get("layout"))
        if overrides.get("mean") is None or overrides.get("std") is None:
            log.warning(
                "model has no '%s' metadata: using scale 1/255 without mean/std normalisation "
                "unless mean and std are given",
                METADATA_KEY,
            )
    spec = _fill_size(spec.replace(layout=overrides.get("layout")), input_shape)
    return spec.replace(**overrides)


def spec_from_model(model: onnx.ModelProto, **overrides: object) -> PreprocessSpec:
    return spec_from_metadata(model_metadata(model), model_input_shape(model), **overrides)


def labels_from_metadata(metadata: Mapping[str, str]) -> tuple[str, ...] | None:
    """Class names from metadata key ``labels`` (a JSON list), or None when absent or malformed."""
    try:
        labels = json.loads(metadata.get("labels", "null"))
    except json.JSONDecodeError:
        return None
    return tuple(str(name) for name in labels) if isinstance(labels, list) else None


def _guess_spec(input_shape: Sequence[Dim], layout: object = None) -> PreprocessSpec:
    fits = [
        name
        for name, axis in (("NCHW", 1), ("NHWC", 3))
        if len(input_shape) == 4 and input_shape[axis] in (1, 3) and layout in (None, name)
    ]
    if len(fits) == 2:
        raise DataError(
            f"model input shape {list(input_shape)} could be N×C×H×W or N×H×W×C and the model has no "
            "preprocessing metadata; give the layout (--layout NCHW|NHWC or layout = \"...\" in the config)"
        )
    if not fits:
        raise DataError(
            f"cannot tell the image layout of model input shape {list(input_shape)}: expected "
            f"{layout or 'N×C×H×W or N×H×W×C'} with 1 or 3 channels (for inputs that are not images, give "
            "an .npz of arrays keyed by input name)"
        )
    channels = input_shape[1] if fits[0] == "NCHW" else input_shape[3]
    color = "RGB" if channels == 3 else "L"
    return PreprocessSpec(layout=fits[0], color=color, mean=(0.0,) * channels, std=(1.0,) * channels)


def _fill_size(spec: PreprocessSpec, input_shape: Sequence[Dim]) -> PreprocessSpec:
    if spec.size is not None or len(input_shape) != 4:
        return spec
    height, width = (
        (input_shape[2], input_shape[3]) if spec.layout == "NCHW" else (input_shape[1], input_shape[2])
    )
    if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
        return dataclasses.replace(spec, size=(height, width))
    return spec


def check_images_fit(images: np.ndarray, spec: PreprocessSpec, source: str = "dataset") -> None:
    """Raise DataError when the images' size or channel count differ from what the spec asks for."""
    if images.ndim != 4:
        raise DataError(f"{source}: images must be N×H×W×C, got shape {images.shape}")
    n_channels = images.shape[3]
    if n_channels != spec.n_channels:
        raise DataError(
            f"{source}: images have {n_channels} channel(s) but the model expects {spec.n_channels} "
            f"({spec.color})"
        )
    if spec.size is not None and tuple(images.shape[1:3]) != tuple(spec.size):
        raise DataError(
            f"{source}: images are {images.shape[1]}×{images.shape[2]} but the model expects "
            f"{spec.size[0]}×{spec.size[1]} (height×width); resize them or load from a folder/archive, "
            "which is resized on decode"
        )


def check_spec_fits_input(spec: PreprocessSpec, input_shape: Sequence[Dim], input_name: str = "") -> None:
    """Raise DataError when images prepared by ``spec`` cannot feed a model input of ``input_shape``."""
    what = f"model input '{input_name}'" if input_name else "the model input"
    if len(input_shape) != 4:
        raise DataError(
            f"images give N×C×H×W or N×H×W×C arrays but {what} has shape {list(input_shape)}; "
            "for inputs that are not images, give an .npz of arrays keyed by input name"
        )
    dims = input_shape[2:4] if spec.layout == "NCHW" else input_shape[1:3]
    channels = input_shape[1] if spec.layout == "NCHW" else input_shape[3]
    if spec.size is not None and all(isinstance(d, int) for d in dims) and tuple(dims) != tuple(spec.size):
        raise DataError(
            f"preprocessing size {spec.size[0]}×{spec.size[1]} does not fit {what} "
            f"{list(input_shape)} ({spec.layout}); give --size H,W or --layout"
        )
    if isinstance(channels, int) and channels != spec.n_channels:
        raise DataError(
            f"preprocessing gives {spec.n_channels} channel(s) ({spec.color}) but {what} "
            f"{list(input_shape)} ({spec.layout}) has {channels}; check --layout and --color"
        )


def to_model_input(images: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 N×H×W×C -> float32 in the spec's layout: pixel·scale, then (x − mean)/std per channel."""
    check_images_fit(images, spec)
    x = images.astype(np.float32) * np.float32(spec.scale)
    x -= np.asarray(spec.mean, dtype=np.float32)
    x /= np.asarray(spec.std, dtype=np.float32)
    if spec.layout == "NCHW":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x
