"""Train a zoo network from scratch on CIFAR-10 and export it to ONNX.

SGD with Nesterov momentum, one-cycle learning rate, label smoothing, random crop (pad 4) and
horizontal flip; GPU when present (bf16 autocast), else CPU.

    python -m agmc_onnx.models.train --arch resnet20 --data ../shared/data/cifar10 --epochs 30 -o r20.onnx
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from agmc_onnx.data import ImageDataset, PreprocessSpec, load_split
from agmc_onnx.models.export import CIFAR10_SPEC, export_onnx
from agmc_onnx.models.networks import ARCHITECTURES, build_network

__all__ = ["TrainConfig", "EpochLog", "train_network", "main"]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 512
    max_lr: float = 0.4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    crop_padding: int = 4
    seed: int = 0


@dataclass(frozen=True)
class EpochLog:
    epoch: int
    loss: float
    train_acc: float
    elapsed_s: float


def train_network(
    module: nn.Module,
    train: ImageDataset,
    spec: PreprocessSpec = CIFAR10_SPEC,
    config: TrainConfig = TrainConfig(),
    *,
    device: str | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> nn.Module:
    """Train ``module`` in place on ``train`` and return it (in eval mode, on the CPU)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    module = module.to(device).train()
    images = torch.from_numpy(train.images).to(device)  # uint8 NHWC; normalised per batch
    labels = torch.from_numpy(train.labels).to(device)
    mean = torch.tensor(spec.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, -1, 1, 1)
    steps_per_epoch = math.ceil(train.n_images / config.batch_size)
    optimizer = torch.optim.SGD(
        module.parameters(),
        lr=config.max_lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=True,
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.max_lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch
    )
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(train.n_images, generator=generator).to(device)
        total_loss, n_correct = 0.0, 0
        for step in range(steps_per_epoch):
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            x = images[index].permute(0, 3, 1, 2).float().mul_(spec.scale).sub_(mean).div_(std)
            x = _augment(x, config.crop_padding, generator)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
                logits = module(x)
                loss = F.cross_entropy(logits.float(), labels[index], label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += float(loss.detach()) * len(index)
            n_correct += int((logits.argmax(1) == labels[index]).sum())
        if on_epoch is not None:
            on_epoch(
                EpochLog(
                    epoch,
                    total_loss / train.n_images,
                    n_correct / train.n_images,
                    time.perf_counter() - started,
                )
            )
    return module.to("cpu").eval()


def _augment(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding, and random horizontal flip, per image (one gather, no loop)."""
    n, _, height, width = x.shape
    padded = F.pad(x, (padding,) * 4)
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator).to(x.device)
    flips = torch.rand(n, generator=generator).lt(0.5).to(x.device)
    rows = offsets[:, :1] + torch.arange(height, device=x.device)
    cols = torch.arange(width, device=x.device).expand(n, width)
    cols = offsets[:, 1:] + torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", required=True, choices=sorted(ARCHITECTURES))
    parser.add_argument(
        "--data", required=True, type=Path, help="dataset path (folder, archive or train/test pair)"
    )
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--lr", type=float, default=TrainConfig.max_lr, help="peak one-cycle learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)

    train = load_split(args.data, "train", CIFAR10_SPEC, cache_dir=args.cache_dir)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, max_lr=args.lr, seed=args.seed)
    print(f"training {args.arch} on {train.n_images} images for {config.epochs} epochs")
    module = train_network(
        build_network(args.arch, len(train.classes)),
        train,
        CIFAR10_SPEC,
        config,
        device=args.device,
        on_epoch=lambda log: print(
            f"epoch {log.epoch}: loss {log.loss:.4f}, train acc {log.train_acc:.4f}, {log.elapsed_s:.0f} s"
        ),
    )
    export_onnx(module, args.output, labels=train.classes)
    from agmc_onnx.evaluate import evaluate_accuracy  # onnxruntime only when the script gets this far

    test = load_split(args.data, "test", CIFAR10_SPEC, cache_dir=args.cache_dir)
    result = evaluate_accuracy(args.output, test)
    summary = {
        "arch": args.arch,
        "config": asdict(config),
        "test_acc_onnxruntime": result.top1,
        "n_test_images": result.n_images,
        "params": int(sum(p.numel() for p in module.parameters())),
    }
    args.output.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {args.output}: test top-1 {100 * result.top1:.2f} % on {result.n_images} images")


if __name__ == "__main__":
    main()
