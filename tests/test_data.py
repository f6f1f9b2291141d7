"""The student loader (fkd.data) on real stores made by ``fkd generate`` from real photos."""

from __future__ import annotations

import math
import pickle
import shutil
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import real_photos
import torch
from hypothesis import given
from hypothesis import strategies as st
from skimage import data as skdata
from torch.utils.data import DistributedSampler

from fkd import crops as crop_ops
from fkd.data import (
    CropLabelDataset,
    CropScheduleSampler,
    ScheduledIndex,
    StoreMismatchError,
    collate_crops,
    crop_schedule,
    decode_on_device,
    make_loader,
    set_epoch,
)
from fkd.generate import GenerateConfig, generate
from fkd.images import decode_image
from fkd.label_codecs_torch import decode_torch
from fkd.storage_formats import LabelStore

M = 8
SIZE = 96  # student input size in most tests (224 works the same, only slower)
FIDELITY_SIZE = 224  # the usual student input, for the comparison with torchvision
MODULE = "fkd_data_tiny_teacher"
TEACHER = textwrap.dedent(
    '''
    import torch
    from torch import nn


    def make():
        """A tiny random teacher with 1000 classes (so label indices are uint16)."""
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(8, 1000),
        )
        return net, {"input_size": 32, "interpolation": "bilinear"}
    '''
)
PHOTOS = [
    ("cat", "chelsea.jpg", skdata.chelsea),
    ("cup", "coffee.jpg", skdata.coffee),
    ("misc", "astronaut.png", skdata.astronaut),
    ("misc", "camera.png", skdata.camera),
]


def save_photos(root: Path, scale: int = 1) -> Path:
    return real_photos.save_photos(root, PHOTOS, scale)


def make_store(data: Path, out: Path) -> Path:
    config = GenerateConfig(
        data=data,
        out=str(out),
        teachers=(f"{MODULE}:make",),
        crops_per_image=M,
        label_type="marginal_smoothing",
        topk=3,
        block_size=2,
        batch_size=64,
        workers=0,
        device="cpu",
    )
    generate(config, progress=False)
    return out


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("teacher")
    (folder / f"{MODULE}.py").write_text(TEACHER)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        yield folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, teacher_path: Path, photos: Path) -> Path:
    return make_store(photos, tmp_path_factory.mktemp("store") / "labels.zarr")


def one_line(error: pytest.ExceptionInfo[BaseException], *fragments: str) -> str:
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# --------------------------------------------------------------------------- fidelity


@pytest.mark.parametrize("backend", ["uint8-bilinear", "roi-align-bilinear"])
def test_loader_batch_equals_reference_crops_and_stored_labels(
    photos: Path, store: Path, backend: str
) -> None:
    loader, dataset, _ = make_loader(
        photos, store, batch_images=4, crops_per_visit=4, input_size=FIDELITY_SIZE, workers=0,
        shuffle=False, resampling=backend,
    )
    batch = next(iter(loader))
    handle = LabelStore.open(store)
    assert batch["images"].shape == (16, 3, FIDELITY_SIZE, FIDELITY_SIZE)
    assert batch["images"].dtype == torch.float32
    assert float(batch["images"].min()) >= 0 and float(batch["images"].max()) <= 255
    assert float(batch["images"].max()) > 1  # 0..255, not normalised
    assert batch["image_index"].tolist() == [i for i in range(4) for _ in range(4)]
    assert batch["targets"].tolist() == [
        int(handle.manifest.targets[i]) for i in range(4) for _ in range(4)
    ]
    assert batch["labels"]["index"].dtype == torch.int64  # stored as uint16
    assert batch["labels"]["value"].dtype == torch.uint8

    diffs = []
    stored = handle.read_images(np.arange(4))
    for image in range(4):
        rows = slice(4 * image, 4 * image + 4)
        chosen = batch["crops"][rows].numpy()
        assert chosen.tolist() == crop_schedule(0, image, 0, M, 4).tolist()
        pixels = decode_image(photos / handle.manifest.paths[image])
        boxes = crop_ops.fractions_to_pixels(stored.boxes[image, chosen], *pixels.shape[:2])
        tensor = crop_ops.image_to_tensor(pixels)
        flips = stored.flips[image, chosen]
        reference = crop_ops.cut_crops_reference(tensor, boxes, flips, FIDELITY_SIZE, "bilinear")
        diffs.append(float((batch["images"][rows] - reference).abs().mean()))
        # Each backend is exactly the teacher's path in `fkd generate`: resized_crop the
        # CPU one, roi_align the GPU one.
        teacher_view = (
            crop_ops.cut_crops(tensor, boxes, flips, FIDELITY_SIZE)
            if backend == "roi-align-bilinear"
            else crop_ops.cut_teacher_crops(pixels, boxes, flips, FIDELITY_SIZE, "bilinear", "cpu")
        )
        torch.testing.assert_close(batch["images"][rows], teacher_view)
        for name, values in stored.labels.items():
            assert np.array_equal(batch["labels"][name][rows].numpy(), values[image, chosen])
    print(f"{backend}: mean abs diff vs resized_crop reference:", [f"{d:.3f}" for d in diffs])
    # Observed: resized_crop 0.30 / 0.28 / 0.26 / 0.29, roi_align 0.01 / 0.41 / 0.77 / 0.30.
    assert max(diffs) < 2.0

    dense = decode_torch(batch["labels"], dataset.codec, "cpu")
    expected = handle.decode_labels(
        {
            name: values[np.repeat(np.arange(4), 4), batch["crops"].numpy()]
            for name, values in stored.labels.items()
        }
    )
    assert dense.shape == (16, 1000)
    torch.testing.assert_close(dense, torch.from_numpy(expected), atol=1e-6, rtol=1e-5)


def test_transform_is_applied_per_crop_after_cutting(photos: Path, store: Path) -> None:
    plain = CropLabelDataset(photos, store, input_size=SIZE)
    seen: list[tuple[int, ...]] = []

    def invert(crop: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(crop.shape))
        return 255 - crop

    inverted = CropLabelDataset(photos, store, input_size=SIZE, transform=invert)
    torch.testing.assert_close(inverted[1]["images"], 255 - plain[1]["images"])
    assert seen == [(3, SIZE, SIZE)] * 4


# --------------------------------------------------------------------------- the schedule


@given(
    m=st.integers(1, 24),
    data=st.data(),
    seed=st.integers(0, 2**32),
    image=st.integers(0, 10**6),
)
def test_schedule_uses_every_crop_once_per_cycle(
    m: int, data: st.DataObject, seed: int, image: int
) -> None:
    n = data.draw(st.integers(1, m))
    period = math.lcm(m, n)
    visits = [crop_schedule(seed, image, v, m, n) for v in range(period // n)]
    flat = np.concatenate(visits)
    assert all(v.dtype == np.int64 and v.shape == (n,) for v in visits)
    for cycle in range(period // m):  # each cycle of M positions is a permutation
        assert sorted(flat[cycle * m : (cycle + 1) * m].tolist()) == list(range(m))
    assert Counter(flat.tolist()) == dict.fromkeys(range(m), period // m)


def test_schedule_is_pure_and_keyed() -> None:
    a = crop_schedule(3, 7, 5, 200, 8)
    assert np.array_equal(a, crop_schedule(3, 7, 5, 200, 8))
    assert not np.array_equal(a, crop_schedule(4, 7, 5, 200, 8))
    assert not np.array_equal(a, crop_schedule(3, 8, 5, 200, 8))
    # A visit straddling cycles: M=8, N=3, visit 2 = positions 6, 7 | 8 (tail, then head).
    cycle0 = crop_schedule(0, 1, 0, 8, 8)
    cycle1 = crop_schedule(0, 1, 1, 8, 8)
    assert crop_schedule(0, 1, 2, 8, 3).tolist() == [*cycle0[6:], cycle1[0]]
    with pytest.raises(ValueError, match="crops_per_visit"):
        crop_schedule(0, 0, 0, 8, 9)


def test_every_stored_crop_is_used_once_over_m_over_n_epochs(photos: Path, store: Path) -> None:
    dataset = CropLabelDataset(photos, store, crops_per_visit=4, input_size=16)
    used: dict[int, list[int]] = {i: [] for i in range(len(dataset))}
    for epoch in range(M // 4):
        dataset.set_epoch(epoch)
        for i in range(len(dataset)):
            used[i] += dataset[i]["crops"].tolist()
    assert all(sorted(crops) == list(range(M)) for crops in used.values())


def schedule_seen(loader: Any, parts: Any, epochs: int) -> list[list[tuple[int, list[int]]]]:
    seen = []
    for epoch in range(epochs):
        set_epoch(parts, epoch)
        rows = []
        for batch in loader:
            index, crops = batch["image_index"].tolist(), batch["crops"].tolist()
            for start in range(0, len(index), 4):
                rows.append((index[start], crops[start : start + 4]))
        seen.append(rows)
    return seen


def test_schedule_and_pixels_are_the_same_with_two_workers(photos: Path, store: Path) -> None:
    parts0 = make_loader(photos, store, batch_images=2, input_size=32, workers=0)
    parts2 = make_loader(photos, store, batch_images=2, input_size=32, workers=2)
    seen0 = schedule_seen(parts0[0], parts0, 2)
    seen2 = schedule_seen(parts2[0], parts2, 2)  # persistent workers see epoch 1 too
    assert seen0 == seen2
    for epoch, rows in enumerate(seen0):
        assert sorted(i for i, _ in rows) == [0, 1, 2, 3]
        assert all(crops == crop_schedule(0, i, epoch, M, 4).tolist() for i, crops in rows)
    first = {i: c for i, c in seen0[0]}
    second = {i: c for i, c in seen0[1]}
    assert all(sorted(first[i] + second[i]) == list(range(M)) for i in first)
    parts2[2].set_epoch(1)
    parts0[2].set_epoch(1)
    torch.testing.assert_close(next(iter(parts2[0]))["images"], next(iter(parts0[0]))["images"])


def test_two_ddp_ranks_see_disjoint_images_and_agree_on_crops(photos: Path, store: Path) -> None:
    dataset = CropLabelDataset(photos, store, input_size=16)
    for epoch in range(3):
        samplers = [CropScheduleSampler(dataset, 2, rank, seed=5) for rank in (0, 1)]
        views = []
        for sampler in samplers:
            sampler.set_epoch(epoch)
            views.append(list(sampler))
        assert not set(views[0]) & set(views[1])
        assert sorted(views[0] + views[1]) == list(range(len(dataset)))
        reference: DistributedSampler[int] = DistributedSampler(dataset, 2, 0, seed=5)
        reference.set_epoch(epoch)
        assert views[0] == list(reference)
        for index in views[0] + views[1]:
            assert isinstance(index, ScheduledIndex) and index.visit == epoch
            assert dataset[index]["crops"].tolist() == crop_schedule(0, index, epoch, M, 4).tolist()
    orders = [list(CropScheduleSampler(dataset, 1, 0, seed=5)) for _ in range(2)]
    assert orders[0] == orders[1]


@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_pads_and_drops_like_distributed_sampler(drop_last: bool) -> None:
    items = list(range(7))
    for replicas in (2, 3, 10):
        for rank in range(replicas):
            mine = CropScheduleSampler(items, replicas, rank, seed=1, drop_last=drop_last)
            theirs: DistributedSampler[int] = DistributedSampler(
                items,  # type: ignore[arg-type]
                replicas,
                rank,
                seed=1,
                drop_last=drop_last,
            )
            mine.set_epoch(2)
            theirs.set_epoch(2)
            assert list(mine) == list(theirs) and len(mine) == len(theirs)


def test_scheduled_index_survives_pickling() -> None:
    index = pickle.loads(pickle.dumps(ScheduledIndex(3, 7)))
    assert index == 3 and index.visit == 7 and isinstance(index, int)


# --------------------------------------------------------------------------- copies and refusals


def test_resized_copy_is_refused_unless_sizes_are_not_checked(
    tmp_path: Path, photos: Path, store: Path
) -> None:
    small = save_photos(tmp_path / "small", scale=2)
    with pytest.raises(StoreMismatchError) as error:
        CropLabelDataset(small, store)
    one_line(error, "4 of its 4 images changed size", "'cat/chelsea.jpg'", "check_sizes=False")

    copy = CropLabelDataset(small, store, input_size=SIZE, check_sizes=False)
    original = CropLabelDataset(photos, store, input_size=SIZE)
    handle = LabelStore.open(store)
    for i in range(len(copy)):
        item = copy[i]
        chosen = item["crops"].numpy()
        assert chosen.tolist() == original[i]["crops"].tolist()
        pixels = decode_image(small / handle.manifest.paths[i])
        batch = handle.read_image(i)
        boxes = crop_ops.fractions_to_pixels(batch.boxes[0, chosen], *pixels.shape[:2])
        expected = crop_ops.cut_crops_reference(
            crop_ops.image_to_tensor(pixels), boxes, batch.flips[0, chosen], SIZE
        )
        assert float((item["images"] - expected).abs().mean()) < 1
        # The same regions of the half-size copy: close to the original's crops.
        assert float((item["images"] - original[i]["images"]).abs().mean()) < 10


def test_missing_image_is_refused_naming_it(tmp_path: Path, photos: Path, store: Path) -> None:
    partial = shutil.copytree(photos, tmp_path / "partial")
    (partial / "misc" / "camera.png").unlink()
    with pytest.raises(StoreMismatchError) as error:
        CropLabelDataset(partial, store)
    one_line(error, "1 of its 4 images are missing", "'misc/camera.png'")


def test_uncommitted_store_is_refused(tmp_path: Path, photos: Path, store: Path) -> None:
    broken = shutil.copytree(store, tmp_path / "broken.zarr")
    (broken / "block_commit" / "c" / "1").unlink()
    with pytest.raises(StoreMismatchError) as error:
        CropLabelDataset(photos, broken)
    one_line(error, "1 of 2 blocks are not committed", "blocks [1]", "fkd generate")


def test_failed_image_is_refused_unless_skipped(
    tmp_path: Path, teacher_path: Path, photos: Path
) -> None:
    folder = shutil.copytree(photos, tmp_path / "with_bad")
    (folder / "cat" / "empty.jpg").write_bytes(b"")
    with_bad = make_store(folder, tmp_path / "with_bad.zarr")
    with pytest.raises(StoreMismatchError) as error:
        CropLabelDataset(folder, with_bad)
    one_line(
        error, "1 image(s) that failed", "'cat/empty.jpg' (zero-byte file)", "skip_failed=True"
    )
    dataset = CropLabelDataset(folder, with_bad, input_size=16, skip_failed=True)
    handle = LabelStore.open(with_bad)
    bad = handle.manifest.paths.index("cat/empty.jpg")
    assert len(dataset) == 4 and bad not in dataset.indices.tolist()
    assert [dataset[i]["image_index"] for i in range(4)] == dataset.indices.tolist()


def test_too_many_crops_per_visit_is_refused(photos: Path, store: Path) -> None:
    with pytest.raises(StoreMismatchError) as error:
        CropLabelDataset(photos, store, crops_per_visit=9)
    one_line(error, "crops_per_visit=9", "8 crops per image")


# --------------------------------------------------------------------------- plumbing


def test_batched_items_equal_single_items(photos: Path, store: Path) -> None:
    dataset = CropLabelDataset(photos, store, input_size=16)
    dataset.set_epoch(1)
    indices = [ScheduledIndex(2, 0), 3, ScheduledIndex(2, 0), ScheduledIndex(0, 5)]
    for batched, index in zip(dataset.__getitems__(indices), indices, strict=True):
        single = dataset[index]
        assert batched["crops"].tolist() == single["crops"].tolist()
        assert batched["image_index"] == single["image_index"]
        torch.testing.assert_close(batched["images"], single["images"])
        for name, values in single["labels"].items():
            assert np.array_equal(batched["labels"][name], values)
    assert dataset[3]["crops"].tolist() == crop_schedule(0, 3, 1, M, 4).tolist()
    assert dataset[ScheduledIndex(0, 5)]["crops"].tolist() == crop_schedule(0, 0, 5, M, 4).tolist()


def test_dataset_pickles_without_its_store_handle(photos: Path, store: Path) -> None:
    dataset = CropLabelDataset(photos, store, input_size=16)
    first = dataset[2]
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._store is None
    again = clone[2]
    torch.testing.assert_close(again["images"], first["images"])
    assert clone._store is not None


def test_device_decode_matches_decoding_in_the_worker(photos: Path, store: Path) -> None:
    worker = CropLabelDataset(photos, store, input_size=SIZE)
    device = CropLabelDataset(photos, store, input_size=SIZE, device_decode=True)
    items = [device[i] for i in range(4)]
    assert [item["encoded"] is not None for item in items] == [True, True, False, False]
    batch = decode_on_device(collate_crops(items), SIZE, "cpu")
    expected = collate_crops([worker[i] for i in range(4)])
    assert float((batch["images"] - expected["images"]).abs().mean()) < 0.5
    for name, values in expected["labels"].items():
        assert torch.equal(batch["labels"][name], values)


def test_without_labels_gives_the_same_crops(photos: Path, store: Path) -> None:
    with_labels = CropLabelDataset(photos, store, input_size=16)
    without = CropLabelDataset(photos, store, input_size=16, with_labels=False)
    for i in range(len(without)):
        item = without[i]
        assert item["labels"] == {}
        torch.testing.assert_close(item["images"], with_labels[i]["images"])
