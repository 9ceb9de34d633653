"""A small denoising CNN on CIFAR-10 images: a model that is not a classifier, for the label-free benchmark.

DnCNN-style: a stem conv, ``depth`` conv-BN-ReLU blocks, a 3-channel head that predicts the noise, and the
output ``denoised = noisy − predicted noise``. Input and output are RGB in [0, 1] (N×3×H×W); the noise is
Gaussian with ``sigma`` (on the [0, 1] scale). Trained with MSE for a fixed number of steps on the CPU (a
step count, not a wall-clock budget, so a loaded machine trains the same model, only slower).

    python -m agmc_onnx.models.denoiser --data ../shared/data/cifar10 --steps 1500 -o denoiser.onnx
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from agmc_onnx.data import PreprocessSpec, load_split
from agmc_onnx.models.export import export_onnx

__all__ = ["Denoiser", "DENOISER_SPEC", "noisy_pairs", "psnr_db", "train_denoiser", "main"]

DENOISER_SPEC = PreprocessSpec(layout="NCHW", color="RGB", size=(32, 32), scale=1.0 / 255.0)
SIGMA = 0.1


class Denoiser(nn.Module):
    def __init__(self, width: int = 16, depth: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        head = nn.Conv2d(width, 3, 3, padding=1)
        nn.init.zeros_(head.weight)  # start as the identity (output = input), then learn the noise
        nn.init.zeros_(head.bias)
        self.body = nn.Sequential(*layers, head)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        return noisy - self.body(noisy)


def noisy_pairs(images: np.ndarray, sigma: float = SIGMA, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) float32 N×3×H×W in [0, 1] from uint8 N×H×W×3 images; the noise is seeded."""
    clean = images.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    noise = np.random.default_rng(seed).standard_normal(clean.shape).astype(np.float32) * sigma
    return clean + noise, clean


def psnr_db(denoised: np.ndarray, clean: np.ndarray) -> float:
    """Mean PSNR over images, in dB, of ``denoised`` clipped to [0, 1] against ``clean``."""
    error = ((np.clip(denoised, 0.0, 1.0) - clean) ** 2).reshape(len(clean), -1).mean(axis=1)
    return float(np.mean(10.0 * np.log10(1.0 / np.maximum(error, 1e-12))))


def train_denoiser(
    images: np.ndarray, steps: int, *, batch_size: int = 32, seed: int = 0
) -> tuple[Denoiser, dict]:
    """Adam on MSE with fresh noise every batch, for ``steps`` batches."""
    torch.manual_seed(seed)
    model = Denoiser()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    clean_all = torch.from_numpy(images.astype(np.float32).transpose(0, 3, 1, 2) / 255.0)
    generator = torch.Generator().manual_seed(seed)
    started, cpu_started, loss = time.perf_counter(), time.process_time(), math.nan
    model.train()
    for _ in range(steps):
        index = torch.randint(0, len(clean_all), (batch_size,), generator=generator)
        clean = clean_all[index]
        noisy = clean + torch.randn(clean.shape, generator=generator) * SIGMA
        loss_t = nn.functional.mse_loss(model(noisy), clean)
        optimizer.zero_grad(set_to_none=True)
        loss_t.backward()
        optimizer.step()
        loss = loss_t.item()
    log = {"steps": steps, "batch_size": batch_size, "final_batch_mse": loss}
    log |= {"wall_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu_started}
    return model.eval(), log


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="CIFAR-10 folder (NAME_train/NAME_test archives)")
    parser.add_argument("--steps", type=int, default=1500, help="training batches")
    parser.add_argument("--images", type=int, default=10000, help="training images (the first of the train split)")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    train = load_split(args.data, "train", DENOISER_SPEC).images[: args.images]
    model, log = train_denoiser(train, args.steps)
    test = load_split(args.data, "test", DENOISER_SPEC).images[:1000]
    noisy, clean = noisy_pairs(test, seed=1)
    with torch.no_grad():
        denoised = model(torch.from_numpy(noisy)).numpy()
    info = {
        "model": "denoiser",
        "dataset": "CIFAR-10 (JPEG copy), Gaussian noise sigma 0.1 on [0, 1]",
        **log,
        "train_images": len(train),
        "test_psnr_noisy_db": psnr_db(noisy, clean),
        "test_psnr_denoised_db": psnr_db(denoised, clean),
        "test_images": len(test),
    }
    export_onnx(
        model, args.output, spec=DENOISER_SPEC, labels=(), dataset=info["dataset"], output_name="denoised"
    )
    args.output.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
