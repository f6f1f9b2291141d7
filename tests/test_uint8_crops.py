"""uint8 crops (``uint8_crops=True``): the same whole grey levels, a quarter of the bytes.

The crop datasets can hand their crops to the main process as uint8; the consumer turns
them into float32 on its device (``fkd train`` does, in ``fkd.train.step``).  With the
``"uint8-bilinear"`` resampling that is exact, so training is bit-identical with and
without: checked here on real photos, a store made by ``fkd generate`` and a few steps
of ``fkd train`` (FKD student and hard-label student).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from real_photos import save_photos
from skimage import data as skdata

import fkd.train.loading as loading
import fkd.train.loop as loop
from fkd.crops.datasets import SampledCropDataset
from fkd.crops.kernels import cut_crops_uint8
from fkd.crops.schedule import ScheduledIndex
from fkd.data import CropLabelDataset, collate_crops, make_loader, set_epoch
from fkd.generate import GenerateConfig, generate
from fkd.images import decode_image, scan_source
from fkd.storage_formats import CropSpec
from fkd.train import Distributed, TrainConfig, train

M, N, SIZE = 6, 2, 48
MODULE = "fkd_uint8_tiny_teacher"
TEACHER = textwrap.dedent(
    """
    import torch
    from torch import nn


    def make():
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4, 5),
        )
        return net, {"input_size": 32, "interpolation": "bilinear"}
    """
)
PHOTOS = [
    ("cat", "chelsea.jpg", skdata.chelsea),
    ("cup", "coffee.jpg", skdata.coffee),
    ("cat", "astronaut.png", skdata.astronaut),
    ("cup", "rocket.jpg", skdata.rocket),
]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    return save_photos(root, PHOTOS, scale=3, quality=75, resample=Image.Resampling.BICUBIC)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, photos: Path) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("teacher")
    (folder / f"{MODULE}.py").write_text(TEACHER)
    out = tmp_path_factory.mktemp("store") / "labels.zarr"
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        config = GenerateConfig(
            data=photos, out=str(out), teachers=(f"{MODULE}:make",), crops_per_image=M,
            block_size=2, workers=0, device="cpu",
        )  # fmt: skip
        generate(config, progress=False)
        yield out


def test_the_uint8_kernel_is_the_float_kernel_rounded_nowhere_else() -> None:
    pixels = np.asarray(skdata.coffee())
    boxes = np.array([[10.0, 20.0, 200.0, 300.0], [0.0, 0.0, 400.0, 600.0], [5.4, 7.6, 33.2, 40]])
    flips = np.array([False, True, True])
    floats = cut_crops_uint8(pixels, boxes, flips, 64)
    whole = cut_crops_uint8(pixels, boxes, flips, 64, dtype=torch.uint8)
    assert floats.dtype == torch.float32 and whole.dtype == torch.uint8
    assert torch.equal(whole.float(), floats)


def test_store_items_and_batches_are_the_float_ones_as_uint8(photos: Path, store: Path) -> None:
    floats = CropLabelDataset(photos, store, crops_per_visit=N, input_size=SIZE)
    whole = CropLabelDataset(photos, store, crops_per_visit=N, input_size=SIZE, uint8_crops=True)
    for image in range(len(floats)):
        for visit in (0, 2):
            a, b = floats[ScheduledIndex(image, visit)], whole[ScheduledIndex(image, visit)]
            assert b["images"].dtype == torch.uint8 and b["images"].shape == (N, 3, SIZE, SIZE)
            assert torch.equal(b["images"].float(), a["images"])
            assert torch.equal(a["crops"], b["crops"])
            for name, values in a["labels"].items():
                np.testing.assert_array_equal(values, b["labels"][name])
    batch = collate_crops([whole[0], whole[1]])
    assert batch["images"].dtype == torch.uint8
    assert torch.equal(batch["images"].float(), collate_crops([floats[0], floats[1]])["images"])


@pytest.mark.parametrize("workers", [0, 1])
def test_make_loader_collates_uint8_in_workers(photos: Path, store: Path, workers: int) -> None:
    batches = {}
    for uint8 in (False, True):
        loader, dataset, sampler = make_loader(
            photos, store, batch_images=2, crops_per_visit=N, input_size=SIZE,
            workers=workers, shuffle=False, uint8_crops=uint8,
        )  # fmt: skip
        set_epoch((loader, dataset, sampler), 1)
        batches[uint8] = [batch["images"] for batch in loader]
    assert all(images.dtype == torch.uint8 for images in batches[True])
    assert len(batches[True]) == len(batches[False]) == 2
    for whole, floats in zip(batches[True], batches[False], strict=True):
        assert torch.equal(whole.float(), floats)


def test_sampled_crops_as_uint8(photos: Path) -> None:
    source = scan_source(photos)
    spec = CropSpec(crops_per_image=M, seed=3)
    floats = SampledCropDataset(source, spec, N, SIZE, seed=1)
    whole = SampledCropDataset(source, spec, N, SIZE, seed=1, uint8_crops=True)
    for image in range(len(floats)):
        a, b = floats[ScheduledIndex(image, 1)], whole[ScheduledIndex(image, 1)]
        assert b["images"].dtype == torch.uint8
        assert torch.equal(b["images"].float(), a["images"])


def test_uint8_crops_that_would_not_be_exact_are_refused(photos: Path, store: Path) -> None:
    common: dict[str, Any] = {"crops_per_visit": N, "input_size": SIZE, "uint8_crops": True}
    with pytest.raises(ValueError, match="needs resampling 'uint8-bilinear'"):
        CropLabelDataset(photos, store, resampling="roi-align-bilinear", **common)
    with pytest.raises(ValueError, match="needs resampling 'uint8-bilinear'"):
        CropLabelDataset(photos, store, resampling="float-bilinear", **common)
    with pytest.raises(ValueError, match="cannot take a transform"):
        CropLabelDataset(photos, store, transform=lambda crop: crop * 0.5, **common)
    with pytest.raises(ValueError, match="device_decode"):
        CropLabelDataset(photos, store, device_decode=True, **common)
    source = scan_source(photos)
    with pytest.raises(ValueError, match="cannot take a transform"):
        SampledCropDataset(
            source, CropSpec(crops_per_image=M), N, SIZE, 0, transform=torch.neg, uint8_crops=True
        )
    # Without uint8 crops every one of these is accepted, as before.
    CropLabelDataset(photos, store, N, SIZE, resampling="roi-align-bilinear")
    CropLabelDataset(photos, store, N, SIZE, transform=lambda crop: crop * 0.5)


def test_a_decoded_image_cuts_the_same_through_both_paths(photos: Path, store: Path) -> None:
    dataset = CropLabelDataset(photos, store, N, SIZE, uint8_crops=True)
    pixels = decode_image(dataset.path_of(0))
    fractions = np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]])
    flips = np.array([True, False])
    whole = dataset.cut(pixels, fractions, flips)
    dataset.uint8_crops = False
    assert torch.equal(whole.float(), dataset.cut(pixels, fractions, flips))


def _steps(monkeypatch: pytest.MonkeyPatch, config: TrainConfig, uint8: bool) -> list[float]:
    """Per-step losses of ``train(config)``, its loader's crops uint8 or float32."""
    losses: list[float] = []
    dtypes: set[torch.dtype] = set()
    real_step = loop.train_step

    def recording_step(ctx: Any, batch: Any, *args: Any) -> Any:
        dtypes.add(batch["images"].dtype)
        result = real_step(ctx, batch, *args)
        losses.append(result[0])
        return result

    with monkeypatch.context() as patch:
        patch.setattr(loop, "train_step", recording_step)
        patch.setattr(loading, "uint8_crops", lambda _dist_info: uint8)
        train(config)
    assert dtypes == {torch.uint8 if uint8 else torch.float32}
    return losses


@pytest.mark.parametrize("with_store", [True, False])
def test_training_is_bit_identical_with_uint8_crops(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, photos: Path, store: Path, with_store: bool
) -> None:
    torch.set_num_threads(1)
    losses = {}
    for uint8 in (True, False):
        config = TrainConfig(
            data=str(photos), model="cnn_4_8_16", labels=str(store) if with_store else None,
            crops_per_image=None if with_store else M, epochs=2 * N, crops_per_visit=N,
            batch_size=2 * N, input_size=SIZE, workers=0, device="cpu", seed=7,
            out=str(tmp_path / f"run-{uint8}"), mixup=0.2,
        )  # fmt: skip
        losses[uint8] = _steps(monkeypatch, config, uint8)
    assert len(losses[True]) == 4  # 2 visits x 2 steps of 2 images
    assert losses[True] == losses[False]


def test_fkd_train_uses_uint8_crops_off_the_cpu_only() -> None:
    assert not loading.uint8_crops(Distributed())
    assert loading.uint8_crops(Distributed(device=torch.device("cuda", 0)))
    assert loading.uint8_crops(Distributed(device=torch.device("mps")))
