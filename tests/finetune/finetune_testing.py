"""A tiny conv-BN-ReLU-pool-Gemm classifier and a learnable synthetic image set (a uniquely named helper)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from agmc_onnx.finetune import Normalization

N_CLASSES = 3
IMAGE_SIZE = 8
NORMALIZATION = Normalization(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def tiny_classifier(seed: int = 0, dropout: bool = False) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    width = 8
    inits = [
        numpy_helper.from_array((rng.standard_normal((width, 3, 3, 3)) * 0.3).astype(np.float32), "conv.weight"),
        numpy_helper.from_array(np.ones(width, np.float32), "bn.weight"),
        numpy_helper.from_array(np.zeros(width, np.float32), "bn.bias"),
        numpy_helper.from_array(np.zeros(width, np.float32), "bn.running_mean"),
        numpy_helper.from_array(np.ones(width, np.float32), "bn.running_var"),
        numpy_helper.from_array((rng.standard_normal((N_CLASSES, width)) * 0.3).astype(np.float32), "fc.weight"),
        numpy_helper.from_array(np.zeros(N_CLASSES, np.float32), "fc.bias"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization",
            ["c", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"],
            ["b"],
            name="bn",
        ),
        helper.make_node("Relu", ["b"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    if dropout:
        nodes[4] = helper.make_node("Flatten", ["p"], ["f0"], name="flatten")
        nodes.insert(5, helper.make_node("Dropout", ["f0"], ["f"], name="dropout"))
    return _image_classifier("tiny", nodes, inits)


def tiny_residual_classifier(seed: int = 0, block_noise: float = 0.0) -> onnx.ModelProto:
    """conv -> ReLU -> (conv -> ReLU -> conv) + skip -> pool -> Gemm: one residual sum named ``block.sum``.
    ``block_noise`` perturbs the block's weights (a student that starts away from the seed's teacher)."""
    rng = np.random.default_rng(seed)
    noise = np.random.default_rng(seed + 1000)
    width = 8

    def weight(shape, scale, perturbed=False):
        w = rng.standard_normal(shape) * scale
        if perturbed:
            w = w + noise.standard_normal(shape) * block_noise
        return w.astype(np.float32)

    inits = [
        numpy_helper.from_array(weight((width, 3, 3, 3), 0.3), "stem.weight"),
        numpy_helper.from_array(weight((width, width, 3, 3), 0.15, True), "block.conv1.weight"),
        numpy_helper.from_array(weight((width, width, 3, 3), 0.15, True), "block.conv2.weight"),
        numpy_helper.from_array(weight((N_CLASSES, width), 0.3), "fc.weight"),
        numpy_helper.from_array(np.zeros(N_CLASSES, np.float32), "fc.bias"),
    ]
    pads = [1, 1, 1, 1]
    nodes = [
        helper.make_node("Conv", ["input", "stem.weight"], ["s"], name="stem", pads=pads),
        helper.make_node("Relu", ["s"], ["sr"], name="stem_relu"),
        helper.make_node("Conv", ["sr", "block.conv1.weight"], ["c1"], name="block_conv1", pads=pads),
        helper.make_node("Relu", ["c1"], ["r1"], name="block_relu"),
        helper.make_node("Conv", ["r1", "block.conv2.weight"], ["c2"], name="block_conv2", pads=pads),
        helper.make_node("Add", ["c2", "sr"], ["block.sum"], name="block_add"),
        helper.make_node("Relu", ["block.sum"], ["out"], name="out_relu"),
        helper.make_node("GlobalAveragePool", ["out"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    return _image_classifier("tiny_residual", nodes, inits)


def _image_classifier(name: str, nodes: list, inits: list) -> onnx.ModelProto:
    """The checked model of ``nodes``: "input" N×3×8×8 images to "logits" N×3."""
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", N_CLASSES])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def synthetic_images(n_images: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class k brightens colour channel k: learnable in a few steps, noisy enough not to be trivial."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, N_CLASSES, n_images).astype(np.int64)
    images = rng.integers(40, 160, (n_images, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.int64)
    images[np.arange(n_images), :, :, labels] += 70
    return images.clip(0, 255).astype(np.uint8), labels
