"""Binding data to a model's inputs: images through the spec, arrays keyed by input name, clear refusals."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from agmc_onnx.data import PreprocessSpec
from agmc_onnx.data.dataset import ImageDataset
from agmc_onnx.data.feeds import Feeder, model_inputs
from agmc_onnx.data.tensors import TensorDataset
from agmc_onnx.errors import DataError

VOCAB = 10


def token_model() -> onnx.ModelProto:
    """input_ids int64 [batch, 4] -> embedding Gather -> mean over tokens -> Gemm (3 scores)."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((VOCAB, 8)).astype(np.float32), "embedding"),
        numpy_helper.from_array(rng.standard_normal((3, 8)).astype(np.float32), "fc.weight"),
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
    ]
    nodes = [
        helper.make_node("Gather", ["embedding", "input_ids"], ["e"], name="embed"),
        helper.make_node("ReduceMean", ["e", "axes"], ["m"], name="pool", keepdims=0),
        helper.make_node("Gemm", ["m", "fc.weight"], ["scores"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tokens",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", 4])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model


def test_token_ids_feed_an_int64_input_and_out_of_vocabulary_ids_are_refused() -> None:
    inputs = model_inputs(token_model())
    assert inputs[0].index_rows == VOCAB
    ids = np.arange(8, dtype=np.int32).reshape(2, 4)
    feeds = Feeder(TensorDataset({"input_ids": ids}, "ids.npz"), inputs).feeds(slice(None))
    assert feeds["input_ids"].dtype == np.int64
    with pytest.raises(DataError, match=r"input 'input_ids': ids span \[3, 10\] but the table they index has 10 rows"):
        Feeder(TensorDataset({"input_ids": ids + 3}, "ids.npz"), inputs)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((2, 4), np.float32), r"input 'input_ids': the data hold float32 values but the model expects int64"),
        (np.zeros((2, 5), np.int64), r"input 'input_ids': dimension 1 is 5 in the data but the model expects int64"),
        (np.zeros((2, 4, 1), np.int64), r"input 'input_ids': the data have shape \[2, 4, 1\] but the model expects"),
    ],
    ids=["dtype", "fixed-dim", "rank"],
)
def test_arrays_that_cannot_feed_an_input_name_it_and_what_it_expects(array: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message):
        Feeder(TensorDataset({"input_ids": array}, "bad.npz"), model_inputs(token_model()))


def test_missing_input_name_is_reported() -> None:
    with pytest.raises(DataError, match=r"lacks the model input\(s\) \['input_ids'\]; it holds \['ids'\]"):
        Feeder(TensorDataset({"ids": np.zeros((2, 4), np.int64)}, "bad.npz"), model_inputs(token_model()))


def test_images_feed_nhwc_models_in_their_layout_and_a_token_model_refuses_them(tmp_path) -> None:
    from tiny_models import TinyNet

    net = TinyNet("nhwc", input_shape=(8, 8, 3))
    nchw = net.node("Transpose", ["input"], perm=[0, 3, 1, 2])
    model = net.build(net.conv(nchw, 3, 4))
    images = ImageDataset.unlabelled(np.full((2, 8, 8, 3), 255, np.uint8))
    spec = PreprocessSpec(layout="NHWC", size=(8, 8))
    feeds = Feeder(images, model_inputs(model), spec).feeds(slice(None))
    assert feeds["input"].shape == (2, 8, 8, 3) and float(feeds["input"].max()) == 1.0
    with pytest.raises(DataError, match="does not fit model input 'input'"):
        Feeder(images, model_inputs(model), PreprocessSpec(layout="NCHW", size=(8, 8)))
    with pytest.raises(DataError, match="images cannot feed input 'input_ids'"):
        Feeder(images, model_inputs(token_model()), spec)
