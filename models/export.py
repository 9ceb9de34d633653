"""Export a trained zoo network to ONNX in the zoo's format.

Opset 17, BatchNormalization kept (TorchScript exporter without constant folding), dynamic batch,
input ``input``, output ``logits``, and ``preprocessing`` / ``labels`` / ``dataset`` metadata.

    python -m agmc_onnx.models.export --arch resnet20 --checkpoint resnet20.pt -o resnet20.onnx
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch

from agmc_onnx.data.preprocessing import PreprocessSpec
from agmc_onnx.errors import PreconditionError
from agmc_onnx.io import load_model, save_model

__all__ = ["export_onnx", "CIFAR10_SPEC", "CIFAR10_LABELS", "CIFAR10_DATASET", "main"]

CIFAR10_SPEC = PreprocessSpec(
    layout="NCHW",
    color="RGB",
    size=(32, 32),
    scale=1.0 / 255.0,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.247, 0.2435, 0.2616),
)
CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_DATASET = "CIFAR-10 (JPEG copy)"


def export_onnx(
    module: torch.nn.Module,
    path: str | os.PathLike,
    *,
    spec: PreprocessSpec = CIFAR10_SPEC,
    labels: Sequence[str] = CIFAR10_LABELS,
    dataset: str = CIFAR10_DATASET,
    opset: int = 17,
    output_name: str = "logits",
) -> onnx.ModelProto:
    """Write ``module`` (evaluated in eval mode on CPU) as ONNX with metadata; return the written model.

    ``labels`` may be empty (a model that is not a classifier): the ``labels`` metadata is then left out.
    """
    if spec.size is None:
        raise PreconditionError("the preprocessing spec needs a size to build the export input")
    module = module.to("cpu").eval()
    height, width = spec.size
    shape = (
        (1, spec.n_channels, height, width) if spec.layout == "NCHW" else (1, height, width, spec.n_channels)
    )
    with tempfile.TemporaryDirectory() as tmp:
        raw_path = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice says nothing here
            torch.onnx.export(
                module,
                (torch.zeros(shape),),
                str(raw_path),
                dynamo=False,
                opset_version=opset,
                do_constant_folding=False,  # folding would fuse BatchNormalization into Conv
                input_names=["input"],
                output_names=[output_name],
                dynamic_axes={"input": {0: "batch"}, output_name: {0: "batch"}},
            )
        model = load_model(raw_path)
    metadata = {"preprocessing": spec.to_json(), "dataset": dataset}
    if labels:
        metadata["labels"] = json.dumps(list(labels))
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    save_model(model, path)
    return model


def main(argv: Sequence[str] | None = None) -> None:
    from agmc_onnx.models.networks import ARCHITECTURES, build_network

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", required=True, choices=sorted(ARCHITECTURES))
    parser.add_argument(
        "--checkpoint", type=Path, help="state_dict saved by torch.save (default: random weights)"
    )
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    module = build_network(args.arch, args.num_classes)
    if args.checkpoint:
        module.load_state_dict(torch.load(args.checkpoint, map_location="cpu", weights_only=True))
    export_onnx(module, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
