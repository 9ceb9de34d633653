"""Builders of corpus architectures from timm, transformers and a ShuffleNet V1, all with random weights.

Nothing is downloaded: timm models are created with ``pretrained=False`` and transformers encoders from
a configuration object, so the corpus builds offline.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["timm_model", "text_encoder", "shufflenet_v1", "TEXT_VOCAB", "TEXT_LENGTH"]

TEXT_VOCAB = 1000
TEXT_LENGTH = 16  # the sequence length the encoders are traced with; the exported length stays symbolic


def timm_model(name: str, **kwargs: object) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, num_classes=10, **kwargs)


class _EncoderHead(nn.Module):
    """A text encoder with a classification head on its first token, taking ids and an attention mask."""

    def __init__(self, encoder: nn.Module, hidden: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(hidden, 4)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden[:, 0])


def text_encoder(family: str) -> nn.Module:
    """A tiny BERT-like encoder (2 layers, width 64, 4 heads) of ``family``: bert, distilbert or roberta."""
    import transformers

    shared = {"vocab_size": TEXT_VOCAB, "max_position_embeddings": 64, "attn_implementation": "eager"}
    if family == "bert":
        config = transformers.BertConfig(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256, **shared
        )
        encoder = transformers.BertModel(config, add_pooling_layer=False)
    elif family == "distilbert":
        config = transformers.DistilBertConfig(dim=64, n_layers=2, n_heads=4, hidden_dim=256, **shared)
        encoder = transformers.DistilBertModel(config)
    elif family == "roberta":
        config = transformers.RobertaConfig(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256, pad_token_id=1, **shared
        )
        encoder = transformers.RobertaModel(config, add_pooling_layer=False)
    else:
        raise ValueError(f"unknown text encoder family {family!r}")
    return _EncoderHead(encoder, 64)


class _ShuffleV1Unit(nn.Module):
    """ShuffleNet V1 unit: grouped 1×1, channel shuffle, depthwise 3×3, grouped 1×1; add or concat shortcut."""

    def __init__(self, c_in: int, c_out: int, groups: int, stride: int) -> None:
        super().__init__()
        self.stride, self.groups = stride, groups
        branch_out = c_out - c_in if stride == 2 else c_out
        mid = branch_out // 4
        self.compress = nn.Sequential(nn.Conv2d(c_in, mid, 1, groups=groups, bias=False), nn.BatchNorm2d(mid))
        self.depthwise = nn.Sequential(nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid))
        self.expand = nn.Sequential(
            nn.Conv2d(mid, branch_out, 1, groups=groups, bias=False), nn.BatchNorm2d(branch_out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.compress(x))
        b, c, h, w = out.shape
        out = out.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)
        out = self.expand(self.depthwise(out))
        if self.stride == 2:
            return F.relu(torch.cat([F.avg_pool2d(x, 3, 2, 1), out], 1))
        return F.relu(x + out)


class ShuffleNetV1(nn.Module):
    def __init__(self, groups: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        widths = [24, 240, 480]
        self.stem = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        units = []
        c_in = widths[0]
        for c_out, repeats in zip(widths[1:], (2, 3)):
            units.append(_ShuffleV1Unit(c_in, c_out, groups, 2))
            units += [_ShuffleV1Unit(c_out, c_out, groups, 1) for _ in range(repeats)]
            c_in = c_out
        self.units = nn.Sequential(*units)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.units(self.stem(x)), 1).flatten(1))


def shufflenet_v1(groups: int = 3) -> nn.Module:
    return ShuffleNetV1(groups)
