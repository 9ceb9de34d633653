"""Batch augmentation and normalisation in torch, on whole N×C×H×W batches (uint8 or float)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agmc_onnx.finetune.config import Normalization

__all__ = ["random_crop_flip", "normalize"]


def random_crop_flip(
    images: torch.Tensor, padding_px: int, flip: bool, generator: torch.Generator
) -> torch.Tensor:
    """Zero-pad by ``padding_px``, crop back to the original size at a random offset, flip half the images.

    ``generator`` lives on the CPU so that results do not depend on the device; the chosen offsets are
    moved to the images' device.
    """
    n_images, _, height, width = images.shape
    out = images
    if padding_px > 0:
        padded = F.pad(images, (padding_px, padding_px, padding_px, padding_px))
        offsets = torch.randint(0, 2 * padding_px + 1, (2, n_images), generator=generator).to(images.device)
        rows = offsets[0][:, None] + torch.arange(height, device=images.device)[None, :]
        cols = offsets[1][:, None] + torch.arange(width, device=images.device)[None, :]
        batch_index = torch.arange(n_images, device=images.device)[:, None, None, None]
        channel_index = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
        out = padded[batch_index, channel_index, rows[:, None, :, None], cols[:, None, None, :]]
    if flip:
        flip_mask = (torch.rand(n_images, generator=generator) < 0.5).to(images.device)
        out = torch.where(flip_mask[:, None, None, None], out.flip(-1), out)
    return out


def normalize(images: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    """uint8 (or raw float) N×C×H×W pixels -> the model's float32 input (in its layout)."""
    n_channels = images.shape[1]
    if len(normalization.mean) != n_channels:
        raise ValueError(f"normalization has {len(normalization.mean)} channels, the images {n_channels}")
    mean = torch.tensor(normalization.mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(normalization.std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    x = (images.to(torch.float32) * normalization.scale - mean) / std
    return x.permute(0, 2, 3, 1).contiguous() if normalization.layout == "NHWC" else x
