"""The reference networks: the shipped zoo models' weights load into them and give the same logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import numpy_helper
from torch_threads import one_torch_thread

from agmc_onnx.cost import create_session
from agmc_onnx.errors import PreconditionError
from agmc_onnx.io import load_model
from agmc_onnx.models.networks import ARCHITECTURES, build_network, mobilenet_v2, resnet20, resnet56, vgg16
from agmc_onnx.models.zoo import zoo_model_info, zoo_model_path


def _onnx_state_dict(name: str) -> dict[str, torch.Tensor]:
    """Initializers by name, following the exporter's Identity aliases of bit-identical tensors."""
    model = load_model(zoo_model_path(name), check=False)
    tensors = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in tensors:
            tensors[node.output[0]] = tensors[node.input[0]]
    return {key: torch.from_numpy(value.copy()) for key, value in tensors.items()}


@pytest.mark.parametrize(
    ("name", "builder"), [("resnet20", resnet20), ("resnet56", resnet56), ("mobilenetv2", mobilenet_v2)]
)
def test_parameter_counts_match_the_zoo(name: str, builder) -> None:
    assert sum(p.numel() for p in builder().parameters()) == zoo_model_info(name)["params"]


@pytest.mark.parametrize(("name", "builder"), [("resnet20", resnet20), ("mobilenetv2", mobilenet_v2)])
def test_zoo_weights_load_and_reproduce_onnxruntime_logits(name: str, builder) -> None:
    module = builder().eval()
    missing, unexpected = module.load_state_dict(_onnx_state_dict(name), strict=False)
    assert all(key.endswith("num_batches_tracked") for key in missing)
    assert all(not key.startswith(("conv", "bn", "layers", "fc")) for key in unexpected)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with one_torch_thread(), torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    actual = create_session(zoo_model_path(name)).run(None, {"input": x})[0]
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_vgg16_maps_cifar_images_to_class_scores() -> None:
    module = vgg16(num_classes=7).eval()
    with one_torch_thread(), torch.no_grad():
        assert module(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in module.modules()) == 13


def test_build_network_names_the_choices() -> None:
    assert set(ARCHITECTURES) == {"resnet20", "resnet56", "mobilenet_v2", "vgg16"}
    assert isinstance(build_network("mobilenetv2"), type(mobilenet_v2()))
    with pytest.raises(PreconditionError, match="unknown architecture 'resnet18'"):
        build_network("resnet18")
