"""A corpus of real architectures exported to ONNX with random weights, for tests and benchmarks.

Image entries are exported with the TorchScript exporter with BatchNormalization kept (constant folding
off) and, for the original entries, also with BatchNormalization fused into Conv (the exporter's own
eval-mode fusion). Entries name their opset (some are re-exported at opsets 9 and 10, as older model zoos
ship them), whether the file keeps its weights in an external-data file, and whether the model reads
images or token ids (text encoders: int64 ids and attention mask, dynamic batch and sequence length).
Exports are cached on disk, keyed by the entry, the torch version and the recipe version.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CorpusEntry", "CORPUS", "corpus_names", "export_corpus_model", "DEFAULT_CACHE_DIR", "export_text"]

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
    kind: str = "image"  # "image" | "text"
    opset: int = 17
    external_data: bool = False
    variants: tuple[str, ...] = ("bn", "fused")  # "fused": BatchNormalization folded by the exporter
    extended: bool = False  # added for any-model support: its own benchmark table, slow in tests

    def build(self) -> Callable:
        module_name, func_name = self.builder.split(":")
        module = importlib.import_module(module_name)
        return getattr(module, func_name)(**dict(self.kwargs))


def _tv(name: str, size: int = 64, heavy: bool = False, **kwargs: object) -> CorpusEntry:
    return CorpusEntry(name, f"torchvision.models:{name}", size, heavy, tuple(sorted(kwargs.items())))


def _own(name: str) -> CorpusEntry:
    return CorpusEntry(name, f"agmc_onnx.models.networks:{name}", 32)


_BUILDERS = "agmc_onnx.models.corpus_builders"


def _timm(name: str, size: int = 64, **kwargs: object) -> CorpusEntry:
    kwargs = {"name": name, **kwargs}
    entry_kwargs = tuple(sorted(kwargs.items()))
    return CorpusEntry(
        f"timm_{name}", f"{_BUILDERS}:timm_model", size, False, entry_kwargs, variants=("bn",), extended=True
    )


def _text(family: str) -> CorpusEntry:
    return CorpusEntry(
        f"text_{family}",
        f"{_BUILDERS}:text_encoder",
        0,
        False,
        (("family", family),),
        kind="text",
        variants=("bn",),
        extended=True,
    )


def _old_opset(name: str, opset: int) -> CorpusEntry:
    return CorpusEntry(
        f"{name}_opset{opset}", f"torchvision.models:{name}", 64, opset=opset, variants=("bn",), extended=True
    )


_EXTRA = (
    _timm("vit_tiny_patch16_224", img_size=64),
    _timm("deit_tiny_patch16_224", img_size=64),
    _timm("pit_ti_224", img_size=64),
    _timm("levit_128s", img_size=64),
    _timm("mobilevit_xxs"),
    _timm("edgenext_xx_small"),
    _timm(
        "swin_tiny_patch4_window7_224",
        img_size=64,
        window_size=4,
        embed_dim=48,
        depths=(1, 1, 2, 1),
        num_heads=(2, 4, 8, 16),
    ),
    _timm("convnext_atto"),
    _timm("regnetx_002"),
    _timm("ghostnet_100"),
    _timm("repvgg_a0"),
    _timm("efficientnet_b0"),
    _timm("mobilenetv3_small_100"),
    _timm("resnest14d"),
    _timm("mixnet_s"),
    _timm("rexnet_100"),
    _timm("lcnet_050"),
    _text("bert"),
    _text("distilbert"),
    _text("roberta"),
    _old_opset("resnet18", 9),
    _old_opset("mobilenet_v2", 10),
    _old_opset("shufflenet_v2_x0_5", 10),
    CorpusEntry(
        "resnet18_external_data",
        "torchvision.models:resnet18",
        64,
        external_data=True,
        variants=("bn",),
        extended=True,
    ),
    CorpusEntry(
        "shufflenet_v1_g3",
        f"{_BUILDERS}:shufflenet_v1",
        64,
        kwargs=(("groups", 3),),
        variants=("bn",),
        extended=True,
    ),
)


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
CORPUS.update({entry.name: entry for entry in _EXTRA})


def corpus_names(include_heavy: bool = False, include_extended: bool = False) -> list[str]:
    return [
        name
        for name, entry in CORPUS.items()
        if (include_heavy or not entry.heavy) and (include_extended or not entry.extended)
    ]


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
    key = hashlib.sha1(f"{_identity(entry)}|{torch.__version__}|{seed}|{_RECIPE_VERSION}".encode()).hexdigest()[:10]
    path = cache_dir / f"{name}-{variant}-{entry.input_size}-{key}.onnx"
    if path.exists():
        return path
    torch.manual_seed(seed)
    module = entry.build()
    module.eval()
    _randomize_batchnorm(module, seed)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    if entry.kind == "text":
        export_text(module, tmp, entry.opset)
        os.replace(tmp, path)
        return path
    x = torch.randn(1, 3, entry.input_size, entry.input_size)
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
            opset_version=entry.opset,
            do_constant_folding=fused_bn,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    if entry.external_data:
        _move_weights_to_external_data(tmp, path)
        tmp.unlink()
    else:
        os.replace(tmp, path)
    return path


def _identity(entry: CorpusEntry) -> str:
    """The entry as its cache key sees it; entries with default new fields keep their earlier keys."""
    extras = (entry.kind, entry.opset, entry.external_data, entry.variants, entry.extended)
    if extras == ("image", 17, False, ("bn", "fused"), False):
        return (
            f"CorpusEntry(name={entry.name!r}, builder={entry.builder!r}, input_size={entry.input_size!r}, "
            f"heavy={entry.heavy!r}, kwargs={entry.kwargs!r})"
        )
    return repr(entry)


def export_text(module, path: Path, opset: int) -> None:
    """Token ids and attention mask (int64), dynamic batch and sequence length."""
    import torch

    from agmc_onnx.models.corpus_builders import TEXT_LENGTH, TEXT_VOCAB

    ids = torch.randint(0, TEXT_VOCAB, (2, TEXT_LENGTH))
    mask = torch.ones(2, TEXT_LENGTH, dtype=torch.int64)
    dynamic = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (ids, mask),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "logits": {0: "batch"}},
        )


def _move_weights_to_external_data(source: Path, path: Path) -> None:
    """Re-save an export with every weight in ``<name>.data`` beside it, as large-model exporters do."""
    import onnx

    model = onnx.load(str(source))  # noqa: TID251 - writes a third-party style file, not a project output
    onnx.save(  # noqa: TID251
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=f"{path.name}.data",
        size_threshold=0,
    )


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
