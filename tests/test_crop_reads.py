"""Reading some crops of an image: ``read_crops`` / ``read_boxes(images, crops)``.

Format v3 chunks the per-crop arrays along the crops too (docs/format.md §3.1), so a
visit of k crops decodes O(k) bytes whatever M is; v1 and v2 stores read whole images.
Both must give exactly ``read_images``' values at the chosen crops.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from store_factory import block_data, make_spec, write_store

from fkd.storage_formats import FORMAT_VERSION, CodecSpec, LabelStore, StoreSpec
from fkd.storage_formats.layout import label_array_name
from fkd.storage_formats.spec import TARGET_CROPS_PER_CHUNK, diff_generation
from fkd.storage_formats.verify import verify_store

CODECS = {
    "hard": CodecSpec("hard", 50),
    "smoothing": CodecSpec("smoothing", 50, value_dtype="uint8"),
    "marginal_smoothing": CodecSpec("marginal_smoothing", 50, k=3, value_dtype="float16"),
    "marginal_renorm": CodecSpec("marginal_renorm", 300, k=3, value_dtype="uint8"),
    "full": CodecSpec("full", 20, k=20, value_dtype="float16"),
}
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "label_read_bench.py"


def spec_for(codec: str, sampler: str, version: int, crops: int = 10, **chunking) -> StoreSpec:
    spec = make_spec(num_images=10, codec=CODECS[codec], sampler=sampler, crops=crops)
    if version != spec.format_version:
        spec = dataclasses.replace(spec, format_version=version)
    return dataclasses.replace(spec, **chunking) if chunking else spec


def check_selection(store: LabelStore, images: np.ndarray, crops: np.ndarray) -> None:
    whole = store.read_images(images)
    labels = store.read_crops(images, crops)
    boxes, flips = store.read_boxes(images, crops)
    assert set(labels) == set(whole.labels)
    rows = np.arange(len(images))[:, None]
    for field, values in whole.labels.items():
        assert labels[field].dtype == values.dtype
        np.testing.assert_array_equal(labels[field], values[rows, crops], err_msg=field)
    np.testing.assert_array_equal(boxes, whole.boxes[rows, crops])
    np.testing.assert_array_equal(flips, whole.flips[rows, crops])


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("sampler", ["fkd-rrc-v1", "stored"])
@pytest.mark.parametrize("codec", sorted(CODECS))
def test_read_crops_equals_read_images_at_those_crops(tmp_path, codec, sampler, version) -> None:
    # v3 with 3 crops per chunk: 10 crops padded to 12, four crop groups per image.
    chunking = {"crops_per_chunk": 3, "images_per_chunk": 2} if version == 3 else {}
    store = write_store(tmp_path / "s.zarr", spec_for(codec, sampler, version, **chunking))
    rng = np.random.default_rng(0)
    images = np.array([9, 0, 4, 4, 3])  # unsorted, repeated, across blocks
    crops = np.stack([rng.choice(10, size=4, replace=False) for _ in images])
    crops[1] = [9, 9, 0, 1]  # repeated crops, the padded crop group
    check_selection(LabelStore.open(tmp_path / "s.zarr"), images, crops)
    check_selection(store, images, crops)
    check_selection(store, np.array([2]), np.zeros((1, 0), dtype=np.int64))
    # Past the direct reader's batch size: through zarr's coordinate selection.
    many = rng.integers(0, 10, size=70)
    check_selection(store, many, rng.integers(0, 10, size=(70, 3)))
    # A zipped copy: zarr reads it (byte ranges of the shards).
    shutil.make_archive(str(tmp_path / "z"), "zip", tmp_path / "s.zarr")
    check_selection(LabelStore.open(str(tmp_path / "z.zip")), images, crops)
    with pytest.raises(IndexError):
        store.read_crops([0], np.array([[10]]))


def test_v3_chunking_defaults_and_a_v2_layout_when_asked() -> None:
    spec = make_spec(crops=4800, block_size=4)
    assert spec.format_version == FORMAT_VERSION == 3
    assert spec.images_per_chunk == 1 and spec.crops_per_chunk == 253 and spec.padded_crops == 4807
    assert make_spec(crops=200).crops_per_chunk == 200
    assert make_spec(crops=257).crops_per_chunk == 129
    old = dataclasses.replace(spec, format_version=2)  # as fkd generate resumes a v2 store
    assert old.images_per_chunk == 4 and old.crops_per_chunk == 0 and old.padded_crops == 4800
    assert "crops_per_chunk" not in old.to_dict()
    assert StoreSpec.from_dict(old.to_dict()) == old
    assert dataclasses.replace(old, format_version=3) == spec
    explicit = dataclasses.replace(spec, crops_per_chunk=100)
    assert StoreSpec.from_dict(explicit.to_dict()).crops_per_chunk == 100
    with pytest.raises(ValueError, match="crops_per_chunk"):
        dataclasses.replace(old, crops_per_chunk=5)
    with pytest.raises(ValueError, match="crops_per_chunk"):
        dataclasses.replace(spec, crops_per_chunk=4801)


def test_a_v2_store_written_by_this_fkd_reads_as_before(tmp_path) -> None:
    v2 = dataclasses.replace(make_spec(), format_version=2)
    store = write_store(tmp_path / "v2.zarr", v2)
    doc = json.loads((tmp_path / "v2.zarr" / "label_index" / "zarr.json").read_bytes())
    assert doc["chunk_grid"]["configuration"]["chunk_shape"] == [4, 8, 5]
    assert doc["codecs"][0]["configuration"]["chunk_shape"] == [4, 8, 5]
    assert (
        "crops_per_chunk"
        not in json.loads((tmp_path / "v2.zarr" / "zarr.json").read_bytes())["attributes"]["fkd"]
    )
    v3 = write_store(tmp_path / "v3.zarr", make_spec())
    a, b = store.read_images(np.arange(10)), v3.read_images(np.arange(10))
    for field in a.labels:
        np.testing.assert_array_equal(a.labels[field], b.labels[field])
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert verify_store(str(tmp_path / "v2.zarr")) == [] == verify_store(str(tmp_path / "v3.zarr"))


def test_a_v2_store_resumes_in_v2_from_a_v3_spec(tmp_path) -> None:
    v2 = dataclasses.replace(make_spec(num_images=12), format_version=2)
    write_store(tmp_path / "v2.zarr", v2, blocks=[0])
    store = LabelStore.open(tmp_path / "v2.zarr", mode="r+")
    resumed = make_spec(num_images=12).at_version(store.spec.format_version)
    assert resumed == store.spec and diff_generation(store.spec, resumed) == []
    assert make_spec(num_images=12).at_version(1).path_data_bytes == 0
    for block in (1, 2):
        store.write_block(block, block_data(store.spec, block))
    assert verify_store(str(tmp_path / "v2.zarr")) == []
    reference = write_store(tmp_path / "ref.zarr", v2)
    for name in store.layout:
        np.testing.assert_array_equal(
            np.asarray(store.group[name][...]), np.asarray(reference.group[name][...])
        )


def test_generate_resumes_a_v2_store_in_v2(tmp_path) -> None:
    try:  # fkd.generate is becoming a package
        from fkd.generate.store_setup import open_or_create_store
    except ImportError:
        from fkd.generate import open_or_create_store

    v2 = dataclasses.replace(make_spec(num_images=12), format_version=2)
    write_store(tmp_path / "v2.zarr", v2, blocks=[0])
    current = make_spec(num_images=12)  # what this fkd would create: format v3
    store = open_or_create_store(str(tmp_path / "v2.zarr"), current, None, overwrite=False)  # type: ignore[arg-type]
    assert store.spec.format_version == 2 and store.uncommitted_blocks() == [1, 2]
    for block in (1, 2):
        store.write_block(block, block_data(store.spec, block))
    assert verify_store(str(tmp_path / "v2.zarr")) == []


def decoded_per_visit(store: LabelStore, visits: int, k: int) -> float:
    rng = np.random.default_rng(1)
    m = store.spec.crops_per_image
    store.read_crops([0], np.zeros((1, 1), dtype=np.int64))  # the direct readers exist now
    readers = store._readers
    assert readers
    before = sum(r.decoded_bytes for r in readers.values())
    for _ in range(visits):
        image = int(rng.integers(store.spec.num_images))
        store.read_crops([image], rng.choice(m, size=(1, k), replace=False))
    return (sum(r.decoded_bytes for r in readers.values()) - before) / visits


def test_a_visit_decodes_bytes_independent_of_m(tmp_path) -> None:
    k, codec = 4, CODECS["marginal_smoothing"]  # 3 uint8 indices + 3 float16 values a crop
    row = 3 * 1 + 3 * 2
    decoded = {}
    for version, m in [(3, 200), (3, 1200), (3, 4800), (2, 200), (2, 4800)]:
        spec = dataclasses.replace(make_spec(num_images=8, codec=codec, crops=m))
        if version != 3:
            spec = dataclasses.replace(spec, format_version=version)
        store = write_store(tmp_path / f"v{version}-{m}.zarr", spec)
        decoded[version, m] = decoded_per_visit(LabelStore.open(store.location), 30, k)
    bound = k * TARGET_CROPS_PER_CHUNK * row  # at most k inner chunks of <= 256 crops
    for m in (200, 1200, 4800):
        assert decoded[3, m] <= bound
    # Bounded by k chunks whatever M: 24x the crops, not 24x the bytes (at M = 200 one
    # inner chunk holds all of an image's crops, so a visit decodes one chunk, not k).
    assert decoded[3, 4800] <= k * 253 * row and decoded[3, 4800] < 6 * decoded[3, 200]
    assert decoded[3, 4800] <= decoded[3, 1200] * 256 / 240 * 1.4
    # v2 decodes every crop of the image (all 8 images of an inner chunk, in fact).
    assert decoded[2, 4800] >= 4800 * row >= 24 * decoded[2, 200] / 8


def test_label_read_bench_runs_tiny(tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("label_read_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["label_read_bench"] = module
    spec.loader.exec_module(module)
    out = tmp_path / "bench.json"
    args = ["--crops", "20,60", "--images", "8", "--block-size", "4", "--classes", "10"]
    args += ["--visits", "20", "--workdir", str(tmp_path / "w"), "--out", str(out)]
    results = module.main(args)
    assert [r["crops_per_image"] for r in results] == [20, 60]
    for r in json.loads(out.read_text())["results"]:
        assert r["format_version"] == FORMAT_VERSION and r["label_bytes_per_crop"] > 0
        for key in ("warm", "cold_index"):
            assert math.isfinite(r[key]["median_us"]) and r[key]["decoded_bytes_per_visit"] > 0
        assert math.isfinite(r["warm_ratio"]) and math.isfinite(r["cold_ratio"])
    assert not any((tmp_path / "w").iterdir()), "the stores are removed"
    assert label_array_name("index") == "label_index"
