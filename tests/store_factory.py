"""Small deterministic stores for tests (also run as a script by the two-process test)."""

from __future__ import annotations

import sys

import numpy as np

from fkd.storage_formats import (
    BlockData,
    CodecSpec,
    CropSpec,
    LabelStore,
    Manifest,
    StoreSpec,
    TeacherInfo,
    get_codec,
)
from fkd.storage_formats.synthetic import teacher_like_probs

NUM_IMAGES = 10
CROPS = 8
CLASSES = 50
BLOCK = 4


def make_manifest(num_images: int = NUM_IMAGES) -> Manifest:
    paths = [f"class{i % 3}/image{i:03d}.jpg" for i in range(num_images)]
    return Manifest.build(
        paths, [1000 + i for i in range(num_images)], [i % 3 for i in range(num_images)]
    )


def make_spec(
    num_images: int = NUM_IMAGES,
    codec: CodecSpec | None = None,
    sampler: str = "fkd-rrc-v1",
    block_size: int = BLOCK,
    crops: int = CROPS,
) -> StoreSpec:
    manifest = make_manifest(num_images)
    return StoreSpec(
        **{**manifest.spec_fields(), "max_path_bytes": 64},
        codec=codec or CodecSpec("marginal_smoothing", CLASSES, k=5, value_dtype="float16"),
        crops=CropSpec(crops_per_image=crops, sampler=sampler, seed=7),
        teacher=TeacherInfo("test-teacher", input_size=32, resampling="uint8-bilinear"),
        block_size=block_size,
    )


def block_data(spec: StoreSpec, block: int) -> BlockData:
    """Deterministic data for one block: a function of (spec, block) only."""
    start, stop = spec.block_range(block)
    count = stop - start
    rng = np.random.default_rng(1000 + block)
    probs = teacher_like_probs(rng, count, spec.crops_per_image, spec.codec.num_classes)
    heights = rng.integers(20, 400, size=count)
    widths = rng.integers(20, 400, size=count)
    boxes = flips = None
    if spec.crops.boxes_stored:
        corner = rng.uniform(0, 0.5, size=(count, spec.crops_per_image, 2))
        size = rng.uniform(0.1, 0.5, size=(count, spec.crops_per_image, 2))
        boxes = np.concatenate([corner, size], axis=-1)
        flips = rng.random((count, spec.crops_per_image)) < 0.5
    return BlockData(
        height=heights,
        width=widths,
        status=np.ones(count, dtype=np.uint8),
        errors=[""] * count,
        labels=get_codec(spec.codec).encode(probs),
        boxes=boxes,
        flips=flips,
    )


def write_store(path, spec: StoreSpec | None = None, blocks=None) -> LabelStore:
    spec = spec or make_spec()
    store = LabelStore.create(path, spec, make_manifest(spec.num_images))
    for block in range(spec.num_blocks) if blocks is None else blocks:
        store.write_block(block, block_data(spec, block))
    return store


def read_all(store: LabelStore) -> dict[str, np.ndarray]:
    """Every array of a store, as numpy, by name."""
    return {name: np.asarray(store.group[name][...]) for name in store.layout}


if __name__ == "__main__":
    # python store_factory.py STORE WORKER NUM_WORKERS: write blocks b with b % n == worker.
    location, worker, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    handle = LabelStore.open(location, mode="r+")
    for b in range(handle.num_blocks):
        if b % workers == worker:
            handle.write_block(b, block_data(handle.spec, b))
