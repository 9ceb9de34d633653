"""Reference CIFAR networks in PyTorch (the zoo's architectures).

Module names follow the shipped zoo models (``conv1``, ``bn1``, ``layers.N.*``, ``fc``), so a zoo ONNX
model's initializers load straight into these modules' state dicts.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from agmc_onnx.errors import PreconditionError

__all__ = ["resnet20", "resnet56", "mobilenet_v2", "vgg16", "ARCHITECTURES", "build_network"]


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers; a 1×1 conv-BN projection shortcut where the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32×32 inputs: stages of 16, 32, 64 channels with n basic blocks each."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_channels = [], 16
        for stage, channels in enumerate((16, 32, 64)):
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(BasicBlock(in_channels, channels, stride))
                in_channels = channels
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


class InvertedResidual(nn.Module):
    """1×1 expand, 3×3 depthwise, 1×1 project (linear); residual when stride 1 and widths match."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        self.conv1 = nn.Conv2d(in_channels, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.conv3 = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu6(self.bn1(self.conv1(x)))
        out = F.relu6(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + x if self.use_residual else out


# (expansion, out_channels, n_blocks, first stride); the second stage keeps stride 1 for 32×32 inputs.
_MOBILENET_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class CifarMobileNetV2(nn.Module):
    """MobileNetV2 for 32×32 inputs: stride-1 stem and stride-1 second stage (common CIFAR variant)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        layers, in_channels = [], 32
        for expansion, channels, n_blocks, first_stride in _MOBILENET_V2_STAGES:
            for index in range(n_blocks):
                layers.append(
                    InvertedResidual(in_channels, channels, expansion, first_stride if index == 0 else 1)
                )
                in_channels = channels
        self.layers = nn.Sequential(*layers)
        self.conv2 = nn.Conv2d(320, 1280, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.fc = nn.Linear(1280, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu6(self.bn1(self.conv1(x))))
        out = F.relu6(self.bn2(self.conv2(out)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


_VGG16_WIDTHS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class CifarVGG(nn.Module):
    """VGG-16 with BatchNormalization for 32×32 inputs: 13 conv-BN-ReLU layers, one linear classifier."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for width in _VGG16_WIDTHS:
            if width == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [
                    nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(),
                ]
                in_channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _init_weights(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.zeros_(layer.bias)


def resnet20(num_classes: int = 10) -> CifarResNet:
    return CifarResNet(3, num_classes)


def resnet56(num_classes: int = 10) -> CifarResNet:
    return CifarResNet(9, num_classes)


def mobilenet_v2(num_classes: int = 10) -> CifarMobileNetV2:
    return CifarMobileNetV2(num_classes)


def vgg16(num_classes: int = 10) -> CifarVGG:
    return CifarVGG(num_classes)


ARCHITECTURES = {"resnet20": resnet20, "resnet56": resnet56, "mobilenet_v2": mobilenet_v2, "vgg16": vgg16}


def build_network(arch: str, num_classes: int = 10) -> nn.Module:
    """The network named ``arch`` (one of ``ARCHITECTURES``); ``mobilenetv2`` is accepted too."""
    key = "mobilenet_v2" if arch == "mobilenetv2" else arch
    if key not in ARCHITECTURES:
        raise PreconditionError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[key](num_classes)
