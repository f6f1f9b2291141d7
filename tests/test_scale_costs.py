"""Costs that must not grow with the store: counted reads, not timings.

A per-block or per-image step that reads every commit marker, or the whole
manifest, passes a unit test at 10 blocks and takes hours at ImageNet's 5,005.
These tests count the keys read through a store wrapper at two store sizes and
require the same count, so they fail while any such cost grows with the block
count.  ``benchmarks/scale_bench.py`` times the same operations at 1.28M images.
"""

from __future__ import annotations

import dataclasses
import pickle
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from store_factory import block_data, make_manifest, make_spec, read_all, write_store

from fkd.cli.main import cli
from fkd.storage_formats import FORMAT_VERSION, LabelStore
from fkd.storage_formats.layout import COMMIT_ARRAY
from fkd.storage_formats.verify import verify_store
from fkd.storage_formats.zarr_store import ContainedLocalStore

MANIFEST_ARRAYS = ("image_path_data", "image_path_offsets", "image_nbytes", "image_target")


class CountingStore(ContainedLocalStore):
    """A local store that counts, per array, the chunk keys read or checked for existence."""

    def __init__(self, root: Path, read_only: bool = False) -> None:
        super().__init__(root, read_only=read_only)
        self.reads: Counter[str] = Counter()

    def count(self, key: str) -> None:
        array, *rest = key.split("/")
        if rest[:1] == ["c"]:  # a chunk, not metadata
            self.reads[array] += 1

    async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
        self.count(key)
        return await super().get(key, prototype, byte_range)

    async def get_partial_values(self, prototype: Any, key_ranges: Any) -> Any:
        for key, _ in key_ranges:
            self.count(key)
        return await super().get_partial_values(prototype, key_ranges)

    async def exists(self, key: str) -> bool:
        self.count(key)
        return await super().exists(key)


def store_of(tmp_path: Path, blocks: int, name: str = "s.zarr") -> Path:
    """A complete store of ``blocks`` blocks of 4 images."""
    path = tmp_path / name
    write_store(path, make_spec(num_images=4 * blocks))
    return path


def counted(path: Path, mode: str = "r") -> tuple[LabelStore, CountingStore]:
    backend = CountingStore(path, read_only=mode == "r")
    return LabelStore.open(backend, mode=mode), backend


@pytest.mark.parametrize("blocks", [(3, 24)])
def test_writing_a_block_reads_the_same_keys_at_any_block_count(tmp_path, blocks) -> None:
    per_write = []
    for count in blocks:
        path = store_of(tmp_path, count, f"s{count}.zarr")
        handle, backend = counted(path, mode="r+")
        spec = handle.spec
        handle.committed_mask()  # a resume scan first, as generate does
        backend.reads.clear()
        handle.write_block(1, block_data(spec, 1))
        per_write.append(dict(backend.reads))
    small, large = per_write
    assert small == large
    # its own marker only: the existence check, and zarr's read of it before the write
    assert small.get(COMMIT_ARRAY, 0) <= 2


def test_the_resume_scan_opens_no_marker_and_sees_other_writers(tmp_path) -> None:
    path = tmp_path / "s.zarr"
    spec = make_spec(num_images=4 * 24)
    write_store(path, spec, blocks=[0, 5, 23])
    handle, backend = counted(path, mode="r+")
    assert handle.uncommitted_blocks() == [b for b in range(24) if b not in (0, 5, 23)]
    assert backend.reads[COMMIT_ARRAY] == 0
    other = LabelStore.open(path, mode="r+")
    other.write_block(7, block_data(spec, 7))
    assert 7 not in handle.uncommitted_blocks()  # refresh=True: one more listing


def test_the_manifest_is_read_once_per_handle(tmp_path) -> None:
    handle, backend = counted(store_of(tmp_path, 6))
    first = handle.manifest
    reads = sum(backend.reads[name] for name in MANIFEST_ARRAYS)
    assert reads == len(MANIFEST_ARRAYS)  # one chunk each at this size
    assert handle.manifest is first
    handle.read_images(np.arange(8))
    assert sum(backend.reads[name] for name in MANIFEST_ARRAYS) == reads


@pytest.mark.parametrize("blocks", [(3, 24)])
def test_verify_reads_the_manifest_once_at_any_block_count(tmp_path, blocks) -> None:
    counts = []
    for count in blocks:
        handle, backend = counted(store_of(tmp_path, count, f"s{count}.zarr"))
        assert verify_store(handle) == []
        counts.append({name: backend.reads[name] for name in MANIFEST_ARRAYS})
        assert backend.reads["image_status"] <= 2 * count  # each block's chunk, about once
    assert counts[0] == counts[1] == dict.fromkeys(MANIFEST_ARRAYS, 1)


def test_loader_workers_reread_no_marker_manifest_or_per_image_array(tmp_path) -> None:
    """A worker (the dataset unpickled) reads labels only: the files it does not need are gone."""
    import torch  # noqa: F401 - the loader's dataset needs it
    from PIL import Image

    from fkd.data import CropLabelDataset

    spec = make_spec(num_images=12)
    manifest = make_manifest(12)
    root = tmp_path / "images"
    for path, nbytes in zip(manifest.paths, manifest.nbytes.tolist(), strict=True):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (10, 20, 30)).save(root / path, format="PNG")
        size = (root / path).stat().st_size
        assert size <= nbytes
        with open(root / path, "ab") as file:  # pad to the manifest's size
            file.write(b"\0" * (nbytes - size))
    store = tmp_path / "s.zarr"
    write_store(store, spec)
    dataset = CropLabelDataset(root, store, crops_per_visit=2, input_size=16)
    expected = dataset[5]
    worker = pickle.loads(pickle.dumps(dataset))
    for name in (COMMIT_ARRAY, *MANIFEST_ARRAYS, "image_status", "image_height", "image_width"):
        shutil.rmtree(store / name / "c")
    item = worker[5]
    assert torch_equal(item["images"], expected["images"])
    for field, values in expected["labels"].items():
        np.testing.assert_array_equal(item["labels"][field], values)


def torch_equal(a: Any, b: Any) -> bool:
    import torch

    return bool(torch.equal(a, b))


# Format v1 stores: still read, resumed and upgraded --------------------------------------


def v1_spec(blocks: int = 3):
    spec = make_spec(num_images=4 * blocks)
    return dataclasses.replace(spec, format_version=1, path_data_bytes=0)


def test_a_v1_store_reads_as_the_same_store_in_v2(tmp_path) -> None:
    old = write_store(tmp_path / "v1.zarr", v1_spec())
    new = write_store(tmp_path / "v2.zarr", make_spec(num_images=12))
    assert "image_path" in old.layout and "image_path_data" in new.layout
    old, new = LabelStore.open(tmp_path / "v1.zarr"), LabelStore.open(tmp_path / "v2.zarr")
    assert old.spec.format_version == 1 and new.spec.format_version == FORMAT_VERSION
    assert old.manifest == new.manifest and list(old.manifest.paths) == list(new.manifest.paths)
    a, b = old.read_images(np.arange(12)), new.read_images(np.arange(12))
    np.testing.assert_array_equal(a.boxes, b.boxes)
    for field in a.labels:
        np.testing.assert_array_equal(a.labels[field], b.labels[field])
    assert verify_store(str(tmp_path / "v1.zarr")) == []


def test_convert_to_store_upgrades_a_v1_store_with_identical_labels(tmp_path) -> None:
    write_store(tmp_path / "v1.zarr", v1_spec())
    run = CliRunner().invoke(
        cli, ["convert", "--to", "store", str(tmp_path / "v1.zarr"), "--out", str(tmp_path / "up")]
    )
    assert run.exit_code == 0, run.output
    assert f"as format v{FORMAT_VERSION}" in run.output
    old, new = LabelStore.open(tmp_path / "v1.zarr"), LabelStore.open(tmp_path / "up")
    assert new.spec.format_version == FORMAT_VERSION and new.spec.codec == old.spec.codec
    assert new.manifest == old.manifest and new.spec.manifest_digest == old.spec.manifest_digest
    a, b = read_all(old), read_all(new)
    for name in ("label_index", "label_value", "image_height", "image_width", "image_status"):
        np.testing.assert_array_equal(a[name], b[name])
    assert verify_store(str(tmp_path / "up")) == []


def test_generate_resumes_a_v1_store_in_its_own_format(tmp_path) -> None:
    from fkd.generate.store_setup import open_or_create_store

    spec_v1 = v1_spec()
    write_store(tmp_path / "v1.zarr", spec_v1, blocks=[0])
    current = make_spec(num_images=12)  # what this fkd would create: format v2
    store = open_or_create_store(str(tmp_path / "v1.zarr"), current, None, overwrite=False)  # type: ignore[arg-type]
    assert store.spec.format_version == 1 and store.uncommitted_blocks() == [1, 2]
    for block in (1, 2):
        store.write_block(block, block_data(store.spec, block))
    assert verify_store(str(tmp_path / "v1.zarr")) == []


def test_files_in_the_store_grow_with_blocks_not_with_the_manifest(tmp_path) -> None:
    def files(path: Path) -> int:
        return sum(1 for p in path.rglob("*") if p.is_file() and p.name != "zarr.json")

    small, large = store_of(tmp_path, 3, "a.zarr"), store_of(tmp_path, 24, "b.zarr")
    per_block = len([a for a in LabelStore.open(small).layout.values() if a.writer == "block"])
    # the block arrays and the marker per block, plus the manifest's few chunks
    assert files(large) - files(small) == (24 - 3) * (per_block + 1)
    assert files(small) == 3 * (per_block + 1) + len(MANIFEST_ARRAYS)


def test_converting_a_store_onto_itself_is_refused_and_loses_nothing(tmp_path) -> None:
    write_store(tmp_path / "v1.zarr", v1_spec())
    before = read_all(LabelStore.open(tmp_path / "v1.zarr"))
    for out in (tmp_path / "v1.zarr", f"{tmp_path}/./v1.zarr/"):
        run = CliRunner().invoke(
            cli,
            [
                "convert",
                "--to",
                "store",
                str(tmp_path / "v1.zarr"),
                "--out",
                str(out),
                "--overwrite",
            ],
        )
        assert run.exit_code == 1 and "is the source store itself" in run.output, run.output
    after = read_all(LabelStore.open(tmp_path / "v1.zarr"))
    assert before.keys() == after.keys()
    for name, values in before.items():
        np.testing.assert_array_equal(values, after[name])


def test_the_marker_listing_counts_block_numbers_only(tmp_path) -> None:
    """zarr's temporaries, leading zeros and numbers past the last block are not markers."""
    path = tmp_path / "s.zarr"
    write_store(path, make_spec(num_images=4 * 8), blocks=[5])
    markers = path / COMMIT_ARRAY / "c"
    for name in ("1.3f2a.partial", "02", "8", "123", "x"):
        (markers / name).write_bytes(b"junk")
    committed = LabelStore.open(path).committed_mask()
    assert np.flatnonzero(committed).tolist() == [5]
