"""Preprocessing specs: the metadata format, overrides, and the pixel -> input arithmetic."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from agmc_onnx.data import (
    PreprocessSpec,
    labels_from_metadata,
    spec_from_metadata,
    spec_from_model,
    to_model_input,
)
from agmc_onnx.errors import DataError

SHARED_FORMAT = (
    '{"layout": "NCHW", "color": "RGB", "size": [32, 32], "scale": 0.00392156862745098, '
    '"mean": [0.4914, 0.4822, 0.4465], "std": [0.247, 0.2435, 0.2616]}'
)


def _model(shape: list, metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    model = helper.make_model(
        helper.make_graph([helper.make_node("Identity", ["input"], ["y"])], "g", [x], [y])
    )
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    return model


def test_shared_metadata_format_round_trips() -> None:
    spec = PreprocessSpec.from_json(SHARED_FORMAT)
    assert spec.size == (32, 32) and spec.mean == (0.4914, 0.4822, 0.4465)
    assert PreprocessSpec.from_json(spec.to_json()) == spec
    assert json.loads(spec.to_json()) == json.loads(SHARED_FORMAT)


def test_spec_is_read_from_model_metadata_and_overrides_win() -> None:
    model = _model(["batch", 3, 32, 32], {"preprocessing": SHARED_FORMAT, "labels": '["a", "b"]'})
    assert spec_from_model(model).std == (0.247, 0.2435, 0.2616)
    assert spec_from_model(model, mean=(0.5, 0.5, 0.5), std=None).mean == (0.5, 0.5, 0.5)
    assert labels_from_metadata({"labels": '["a", "b"]'}) == ("a", "b")
    assert labels_from_metadata({}) is None


def test_model_without_metadata_gets_layout_and_size_from_its_input() -> None:
    nchw = spec_from_model(_model(["n", 3, 24, 20]))
    nhwc = spec_from_model(_model([1, 16, 16, 1]))
    assert (nchw.layout, nchw.size, nchw.mean, nchw.std) == ("NCHW", (24, 20), (0.0,) * 3, (1.0,) * 3)
    assert (nhwc.layout, nhwc.color, nhwc.size) == ("NHWC", "L", (16, 16))


def test_unrecognisable_input_layout_is_reported() -> None:
    with pytest.raises(DataError, match="cannot tell the image layout"):
        spec_from_metadata({}, ["n", 7, 5, 5])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"layout": "CHW"}, "layout must be one of"),
        ({"mean": (0.5,)}, "needs 3 mean and std values"),
        ({"std": (1.0, 0.0, 1.0)}, "must not contain 0"),
        ({"size": (0, 32)}, "size must be"),
    ],
)
def test_invalid_spec_is_rejected(fields: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        PreprocessSpec(**fields)


def test_malformed_metadata_json_is_reported() -> None:
    with pytest.raises(DataError, match="not valid JSON"):
        PreprocessSpec.from_json("{size: 32")


def test_to_model_input_scales_normalises_and_transposes() -> None:
    images = np.zeros((2, 3, 4, 3), np.uint8)
    images[..., 0], images[..., 1], images[..., 2] = 255, 0, 51
    spec = PreprocessSpec(size=(3, 4), mean=(0.5, 0.0, 0.2), std=(0.5, 1.0, 0.1))
    x = to_model_input(images, spec)
    assert x.shape == (2, 3, 3, 4) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0], 1.0)
    np.testing.assert_allclose(x[:, 1], 0.0)
    np.testing.assert_allclose(x[:, 2], 0.0, atol=1e-6)
    assert to_model_input(images, spec.replace(layout="NHWC")).shape == (2, 3, 4, 3)


def test_to_model_input_rejects_images_of_the_wrong_size() -> None:
    with pytest.raises(DataError, match="images are 3×4 but the model expects 32×32"):
        to_model_input(np.zeros((1, 3, 4, 3), np.uint8), PreprocessSpec(size=(32, 32)))
