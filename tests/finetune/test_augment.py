"""Random crop with padding and horizontal flip, on uint8 and float batches."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agmc_onnx.finetune import Normalization, normalize, random_crop_flip


def _batch(dtype=torch.uint8):
    return torch.randint(0, 256, (6, 3, 5, 7), generator=torch.Generator().manual_seed(0)).to(dtype)


def test_no_padding_and_no_flip_is_the_identity():
    images = _batch()
    assert torch.equal(random_crop_flip(images, 0, False, torch.Generator().manual_seed(1)), images)


def test_every_crop_is_a_window_of_the_padded_image_possibly_flipped():
    for dtype in (torch.uint8, torch.float32):
        images = _batch(dtype)
        out = random_crop_flip(images, 2, True, torch.Generator().manual_seed(1))
        assert out.shape == images.shape and out.dtype == dtype
        padded = F.pad(images, (2, 2, 2, 2))
        for n in range(len(images)):
            windows = [padded[n, :, r : r + 5, c : c + 7] for r in range(5) for c in range(5)]
            assert any(torch.equal(out[n], w) or torch.equal(out[n], w.flip(-1)) for w in windows)


def test_same_generator_seed_gives_the_same_batch():
    images = _batch()
    first = random_crop_flip(images, 4, True, torch.Generator().manual_seed(7))
    second = random_crop_flip(images, 4, True, torch.Generator().manual_seed(7))
    assert torch.equal(first, second)
    assert not torch.equal(first, images)


def test_normalize_applies_scale_mean_std_per_channel():
    images = torch.full((1, 2, 1, 1), 255, dtype=torch.uint8)
    out = normalize(images, Normalization(mean=(0.5, 1.0), std=(0.5, 2.0)))
    torch.testing.assert_close(out.flatten(), torch.tensor([1.0, 0.0]))
