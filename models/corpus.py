"""A corpus of real architectures exported to ONNX with random weights, for tests and benchmarks.

Each entry is exported twice with the TorchScript exporter: with BatchNormalization kept (constant
folding off) and with BatchNormalization fused into Conv (the exporter's own eval-mode fusion).
Exports are cached on disk, keyed by name, variant, input size and the torch version.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CorpusEntry", "CORPUS", "corpus_names", "export_corpus_model", "DEFAULT_CACHE_DIR"]

# Bumped whenever the export recipe changes, so cached exports are rebuilt.
_RECIPE_VERSION = 2
DEFAULT_CACHE_DIR = Path(os.environ.get("AGMC_ONNX_CORPUS_CACHE", Path.cwd() / ".cache" / "corpus"))


@dataclass(frozen=True)
class CorpusEntry:
    name: str
    builder: str  # "module:function"
    input_size: int
    heavy: bool = False  # too large for the default test suite (hundreds of MB of weights)
    kwargs: tuple[tuple[str, object], ...] = ()

    def build(self) -> Callable:
        module_name, func_name = self.builder.split(":")
        module = importlib.import_module(module_name)
        return getattr(module, func_name)(**dict(self.kwargs))


def _tv(name: str, size: int = 64, heavy: bool = False, **kwargs: object) -> CorpusEntry:
    return CorpusEntry(name, f"torchvision.models:{name}", size, heavy, tuple(sorted(kwargs.items())))


def _own(name: str) -> CorpusEntry:
    return CorpusEntry(name, f"agmc_onnx.models.networks:{name}", 32)


CORPUS: dict[str, CorpusEntry] = {
    entry.name: entry
    for entry in (
        _own("resnet20"),
        _own("resnet56"),
        _own("vgg16"),
        _own("mobilenet_v2"),
        _tv("resnet18"),
        _tv("resnet50"),
        _tv("resnext50_32x4d"),
        _tv("wide_resnet50_2"),
        _tv("mobilenet_v2"),
        _tv("mobilenet_v3_small"),
        _tv("mnasnet0_5"),
        _tv("efficientnet_b0"),
        _tv("densenet121"),
        _tv("googlenet", aux_logits=False, init_weights=False),
        _tv("inception_v3", size=96, aux_logits=False, init_weights=False),
        _tv("squeezenet1_1"),
        _tv("shufflenet_v2_x0_5"),
        _tv("regnet_x_400mf"),
        _tv("convnext_tiny"),
        _tv("vgg11_bn", size=224, heavy=True),
        _tv("alexnet", size=224, heavy=True),
    )
}
# torchvision and our own networks share the name mobilenet_v2; the torchvision one is listed as "tv_".
CORPUS["tv_mobilenet_v2"] = _tv("mobilenet_v2")
CORPUS["mobilenet_v2"] = _own("mobilenet_v2")


def corpus_names(include_heavy: bool = False) -> list[str]:
    return [name for name, entry in CORPUS.items() if include_heavy or not entry.heavy]


def export_corpus_model(
    name: str,
    fused_bn: bool = False,
    cache_dir: Path | None = None,
    seed: int = 0,
    exporter: str = "torchscript",
) -> Path:
    """Export corpus model ``name`` (random weights, dynamic batch); return the cached path.

    ``exporter`` "torchscript" writes opset 17 (BatchNormalization kept unless ``fused_bn``); "dynamo"
    uses torch.export at opset 18, whose optimiser folds BatchNormalization and writes other op patterns.
    """
    import torch

    entry = CORPUS[name]
    cache_dir = Path(cache_dir or DEFAULT_CACHE_DIR)
    variant = "dynamo" if exporter == "dynamo" else ("fused" if fused_bn else "bn")
    key = hashlib.sha1(f"{entry}|{torch.__version__}|{seed}|{_RECIPE_VERSION}".encode()).hexdigest()[:10]
    path = cache_dir / f"{name}-{variant}-{entry.input_size}-{key}.onnx"
    if path.exists():
        return path
    torch.manual_seed(seed)
    if entry.builder.startswith("torchvision"):
        module = entry.build()
    else:
        module = entry.build()
    module.eval()
    _randomize_batchnorm(module, seed)
    x = torch.randn(1, 3, entry.input_size, entry.input_size)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    if exporter == "dynamo":
        _export_dynamo(module, x, tmp)
        os.replace(tmp, path)
        return path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (x,),
            str(tmp),
            dynamo=False,
            opset_version=17,
            do_constant_folding=fused_bn,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    os.replace(tmp, path)
    return path


def _export_dynamo(module, x, path: Path) -> None:
    import contextlib
    import io
    import logging

    import torch

    batch = torch.export.Dim("batch")
    quiet = io.StringIO()  # the exporter reports its steps on stdout
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
        warnings.simplefilter("ignore")
        logging.getLogger("torch").setLevel(logging.ERROR)
        program = torch.onnx.export(
            module,
            (x.repeat(2, 1, 1, 1),),
            dynamo=True,
            opset_version=18,
            input_names=["input"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: batch}},
        )
    program.save(str(path))


def _randomize_batchnorm(module, seed: int) -> None:
    """Give normalisation and scale parameters non-trivial values so that slicing errors show up numerically."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm) and layer.running_mean is not None:
                n = layer.num_features
                layer.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                layer.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                if layer.affine:
                    layer.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                    layer.bias.copy_(torch.randn(n, generator=generator) * 0.1)
        # ConvNeXt starts its residual branches at 1e-6 scale, which would hide pruning errors.
        for name, param in module.named_parameters():
            if name.endswith("layer_scale"):
                param.copy_(torch.rand(param.shape, generator=generator) + 0.5)
