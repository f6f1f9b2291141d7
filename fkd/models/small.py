"""Small CNNs for 28-32 px images (registered by ``fkd.models.registry``).

They are for demos and tests on Fashion-MNIST-sized images (decoded to RGB,
normalised with mean = std = 0.5): ``cnn_teacher`` is a stronger network meant to
label crops, ``cnn_4_8_16`` and ``cnn_8_16_32`` are students.  Each is a stack of
blocks of ``3x3 conv -> BatchNorm -> ReLU`` (2x2 max pooling between blocks), global
average pooling and a linear classifier, so any input size of 8 px or more works.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "SMALL_INPUT_SIZE",
    "SMALL_MEAN",
    "SMALL_STD",
    "SmallCNN",
    "cnn_4_8_16",
    "cnn_8_16_32",
    "cnn_teacher",
]

SMALL_INPUT_SIZE = 28
SMALL_MEAN = (0.5, 0.5, 0.5)
SMALL_STD = (0.5, 0.5, 0.5)


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class SmallCNN(nn.Module):
    """``len(widths)`` conv blocks of ``convs_per_block`` conv-BN-ReLU layers each.

    Blocks are separated by 2x2 max pooling; the head is global average pooling,
    dropout and a linear layer.
    """

    def __init__(
        self,
        widths: Sequence[int],
        num_classes: int,
        in_channels: int = 3,
        convs_per_block: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for block, width in enumerate(widths):
            if block > 0:
                layers.append(nn.MaxPool2d(2))
            for _ in range(convs_per_block):
                layers.extend(_conv_bn_relu(channels, width))
                channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        features = torch.flatten(self.pool(self.features(x)), 1)
        logits: Tensor = self.classifier(self.dropout(features))
        return logits


def cnn_teacher(num_classes: int, in_channels: int = 3) -> nn.Module:
    """Teacher CNN for 28-32 px: 32-64-128 channels, one conv-BN-ReLU per block (~94K params)."""
    return SmallCNN((32, 64, 128), num_classes, in_channels, dropout=0.1)


def cnn_4_8_16(num_classes: int, in_channels: int = 3) -> nn.Module:
    """Student CNN for 28-32 px: 4-8-16 channels, one conv-BN-ReLU per block (~1.8K parameters)."""
    return SmallCNN((4, 8, 16), num_classes, in_channels)


def cnn_8_16_32(num_classes: int, in_channels: int = 3) -> nn.Module:
    """Student CNN for 28-32 px: 8-16-32 channels, one conv-BN-ReLU per block (~6.4K parameters)."""
    return SmallCNN((8, 16, 32), num_classes, in_channels)
