"""The Zarr v3 label store: round trips, the block protocol, integrity and refusal."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from store_factory import block_data, make_manifest, make_spec, read_all, write_store
from zarr.storage import LocalStore

from fkd.storage_formats import (
    CodecSpec,
    CorruptChunkError,
    LabelStore,
    StoreError,
    StoreExistsError,
    StoreFormatError,
    UncommittedBlockError,
    get_codec,
)
from fkd.storage_formats.crop_sampler import boxes_to_fractions, sample_boxes

TESTS = Path(__file__).parent


def test_round_trip_of_every_image(tmp_path) -> None:
    spec = make_spec()
    store = write_store(tmp_path / "s.zarr", spec)
    reader = LabelStore.open(tmp_path / "s.zarr")
    assert reader.spec == spec
    assert reader.manifest == make_manifest()
    assert reader.manifest.paths == make_manifest().paths
    assert reader.committed_blocks() == [0, 1, 2] and reader.is_complete()
    batch = reader.read_images(np.arange(spec.num_images))
    for block in range(spec.num_blocks):
        start, stop = spec.block_range(block)
        expected = block_data(spec, block)
        for field, values in expected.labels.items():
            np.testing.assert_array_equal(batch.labels[field][start:stop], values)
        np.testing.assert_array_equal(batch.height[start:stop], expected.height)
    pixels, flips = sample_boxes(spec.crops, np.arange(spec.num_images), batch.height, batch.width)
    np.testing.assert_array_equal(
        batch.boxes, boxes_to_fractions(pixels, batch.height, batch.width)
    )
    np.testing.assert_array_equal(batch.flips, flips)
    dense = reader.decode_labels(batch.labels)
    np.testing.assert_allclose(dense.sum(-1), 1.0, atol=1e-5)
    assert store.failures() == []


@pytest.mark.parametrize("sampler", ["fkd-rrc-v1", "stored"])
def test_read_boxes_gives_read_images_boxes_whole_or_for_chosen_crops(tmp_path, sampler) -> None:
    spec = make_spec(sampler=sampler)
    write_store(tmp_path / "s.zarr", spec)
    reader = LabelStore.open(tmp_path / "s.zarr")
    batch = reader.read_images([9, 0, 5])
    boxes, flips = reader.read_boxes([9, 0, 5])
    np.testing.assert_array_equal(boxes, batch.boxes)
    np.testing.assert_array_equal(flips, batch.flips)
    chosen = np.array([[1, 0], [0, 0], [1, 1]])
    some, some_flips = reader.read_boxes([9, 0, 5], chosen)
    np.testing.assert_array_equal(some, np.take_along_axis(batch.boxes, chosen[..., None], 1))
    np.testing.assert_array_equal(some_flips, np.take_along_axis(batch.flips, chosen, 1))


def test_one_call_reads_a_batch_in_any_order(tmp_path) -> None:
    write_store(tmp_path / "s.zarr")
    reader = LabelStore.open(tmp_path / "s.zarr")
    batch = reader.read_images([9, 0, 5])
    for row, image in enumerate([9, 0, 5]):
        single = reader.read_image(image)
        np.testing.assert_array_equal(single.labels["index"][0], batch.labels["index"][row])
        np.testing.assert_array_equal(single.boxes[0], batch.boxes[row])


def test_stored_boxes_round_trip_within_a_quarter_pixel_at_4096(tmp_path) -> None:
    spec = make_spec(sampler="stored")
    write_store(tmp_path / "s.zarr", spec)
    batch = LabelStore.open(tmp_path / "s.zarr").read_images(range(4))
    expected = block_data(spec, 0)
    assert np.abs(batch.boxes - expected.boxes).max() * 4096 <= 0.25
    np.testing.assert_array_equal(batch.flips, expected.flips)


def test_failed_images_are_recorded_with_their_reason(tmp_path) -> None:
    spec = make_spec()
    store = write_store(tmp_path / "s.zarr", spec, blocks=[1, 2])
    data = block_data(spec, 0)
    status = np.array([1, 2, 1, 1], dtype=np.uint8)
    errors = ["", "cannot identify image file 'class1/image001.jpg'", "", ""]
    store.write_block(0, type(data)(data.height, data.width, status, errors, data.labels))
    reader = LabelStore.open(tmp_path / "s.zarr")
    assert reader.failures() == [(1, errors[1])]
    assert reader.read_image(1).status.tolist() == [2]


def test_reading_an_uncommitted_block_names_it(tmp_path) -> None:
    write_store(tmp_path / "s.zarr", blocks=[0, 2])
    reader = LabelStore.open(tmp_path / "s.zarr")
    assert reader.uncommitted_blocks() == [1]
    assert not reader.is_complete()
    reader.read_images([0, 9])  # committed blocks read fine
    with pytest.raises(UncommittedBlockError, match=r"block 1 \(images 4\.\.7\)"):
        reader.read_images([3, 5])


def test_a_removed_commit_marker_uncommits_its_block(tmp_path) -> None:
    write_store(tmp_path / "s.zarr")
    (tmp_path / "s.zarr" / "block_commit" / "c" / "2").unlink()
    reader = LabelStore.open(tmp_path / "s.zarr")
    assert reader.uncommitted_blocks() == [2]
    with pytest.raises(UncommittedBlockError, match="block 2"):
        reader.read_image(9)


def test_two_processes_writing_disjoint_blocks_match_the_reference(tmp_path) -> None:
    spec = make_spec(num_images=40, block_size=4)
    reference = read_all(write_store(tmp_path / "ref.zarr", spec))
    LabelStore.create(tmp_path / "par.zarr", spec, make_manifest(40))
    workers = [
        subprocess.Popen(
            [sys.executable, "store_factory.py", str(tmp_path / "par.zarr"), str(w), "2"], cwd=TESTS
        )
        for w in range(2)
    ]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]
    parallel = LabelStore.open(tmp_path / "par.zarr")
    assert parallel.is_complete()
    for name, values in read_all(parallel).items():
        np.testing.assert_array_equal(values, reference[name], err_msg=name)


def test_a_flipped_byte_fails_loudly_naming_the_array(tmp_path) -> None:
    write_store(tmp_path / "s.zarr")
    shard = tmp_path / "s.zarr" / "label_value" / "c" / "1" / "0" / "0"
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 3] ^= 0x40
    shard.write_bytes(bytes(raw))
    reader = LabelStore.open(tmp_path / "s.zarr")
    reader.read_images([0, 1, 2, 3, 8, 9])  # other blocks are intact
    with pytest.raises(CorruptChunkError, match="array 'label_value'"):
        reader.read_images([4, 5, 6, 7])


def test_a_flipped_byte_in_a_per_image_array_fails_loudly(tmp_path) -> None:
    write_store(tmp_path / "s.zarr")
    chunk = tmp_path / "s.zarr" / "image_height" / "c" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[2] ^= 0x01
    chunk.write_bytes(bytes(raw))
    with pytest.raises(CorruptChunkError, match="array 'image_height'"):
        LabelStore.open(tmp_path / "s.zarr").read_image(0)


class RecordingStore(LocalStore):
    """A real LocalStore that records every key read through it."""

    keys_read: list[str]

    async def get(self, key, prototype, byte_range=None):
        self.keys_read.append(key)
        return await super().get(key, prototype, byte_range)


def open_recording(path: Path) -> tuple[RecordingStore, LabelStore | Exception]:
    store = RecordingStore(path, read_only=True)
    store.keys_read = []
    try:
        return store, LabelStore.open(store)
    except StoreError as exc:
        return store, exc


def edit_json(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


class Canary:
    """Unpickling this creates the file it names."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_pickle_codec_is_refused_before_any_chunk_is_read(tmp_path) -> None:
    write_store(tmp_path / "s.zarr")
    canary = tmp_path / "canary"
    payload = pickle.dumps(np.array([Canary(canary)], dtype=object))
    for shard in (tmp_path / "s.zarr" / "label_value" / "c").rglob("*"):
        if shard.is_file():
            shard.write_bytes(payload)
    edit_json(
        tmp_path / "s.zarr" / "label_value" / "zarr.json",
        lambda d: d["codecs"][0]["configuration"]["codecs"].insert(
            1, {"name": "numcodecs.pickle", "configuration": {"protocol": 5}}
        ),
    )
    store, result = open_recording(tmp_path / "s.zarr")
    assert isinstance(result, StoreFormatError)
    assert "numcodecs.pickle" in str(result) and "refused" in str(result)
    assert all(key.endswith("zarr.json") for key in store.keys_read)
    assert not canary.exists()
    # Positive control: the payload is live, so the check above means something.
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"import pickle,sys; sys.path.insert(0, {str(TESTS)!r}); "
            f"pickle.loads(open({str(shard)!r}, 'rb').read())",
        ],
        check=False,
        capture_output=True,
    )
    assert canary.exists()


def test_an_object_dtype_is_refused(tmp_path) -> None:
    write_store(tmp_path / "s.zarr")
    edit_json(
        tmp_path / "s.zarr" / "label_index" / "zarr.json", lambda d: d.update(data_type="object")
    )
    store, result = open_recording(tmp_path / "s.zarr")
    assert isinstance(result, StoreFormatError) and "'object' is refused" in str(result)
    assert all(key.endswith("zarr.json") for key in store.keys_read)


def test_a_shape_of_2_to_the_40_images_is_refused(tmp_path) -> None:
    write_store(tmp_path / "s.zarr")

    def enlarge(doc):
        doc["attributes"]["fkd"]["num_images"] = 2**40

    edit_json(tmp_path / "s.zarr" / "zarr.json", enlarge)
    for array in (tmp_path / "s.zarr").iterdir():
        if (array / "zarr.json").exists():
            edit_json(array / "zarr.json", lambda d: d.update(shape=[2**40, *d["shape"][1:]]))
    store, result = open_recording(tmp_path / "s.zarr")
    assert isinstance(result, StoreFormatError) and "num_images" in str(result)
    assert store.keys_read == ["zarr.json"]


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda d: d["attributes"]["fkd"].update(format_version=99), "format_version 99"),
        (lambda d: d["attributes"].pop("fkd"), "not an fkd label store"),
        (lambda d: d["attributes"]["fkd"]["codec"].update(k=-3), "k must be"),
        (lambda d: d["attributes"]["fkd"]["codec"].update(num_classes=0), "num_classes"),
        (lambda d: d["attributes"]["fkd"]["codec"].update(name="pickle"), "unknown label codec"),
    ],
)
def test_bad_group_metadata_is_refused(tmp_path, edit, message) -> None:
    write_store(tmp_path / "s.zarr")
    edit_json(tmp_path / "s.zarr" / "zarr.json", edit)
    with pytest.raises(StoreFormatError, match=message):
        LabelStore.open(tmp_path / "s.zarr")


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda d: d.update(shape=[10, 8, 6]), "shape"),
        (lambda d: d["codecs"][0]["configuration"]["codecs"].pop(), "crc32c"),
        (lambda d: d["codecs"][0]["configuration"].update(chunk_shape=[3, 8, 5]), "inner chunk"),
        (
            lambda d: d.update(
                chunk_grid={"name": "regular", "configuration": {"chunk_shape": [8, 8, 5]}}
            ),
            "chunk shape",
        ),
    ],
)
def test_inconsistent_array_metadata_is_refused(tmp_path, edit, message) -> None:
    write_store(tmp_path / "s.zarr")
    edit_json(tmp_path / "s.zarr" / "label_index" / "zarr.json", edit)
    with pytest.raises(StoreFormatError, match=message):
        LabelStore.open(tmp_path / "s.zarr")


def test_nan_labels_are_never_committed(tmp_path) -> None:
    spec = make_spec()
    store = LabelStore.create(tmp_path / "s.zarr", spec, make_manifest())
    data = block_data(spec, 0)
    labels = dict(data.labels)
    labels["value"] = labels["value"].copy()
    labels["value"][0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        store.write_block(0, type(data)(data.height, data.width, data.status, data.errors, labels))
    assert store.uncommitted_blocks() == [0, 1, 2]


def test_read_only_store_refuses_writes(tmp_path) -> None:
    spec = make_spec()
    write_store(tmp_path / "s.zarr", spec, blocks=[0])
    with pytest.raises(StoreError, match="read-only"):
        LabelStore.open(tmp_path / "s.zarr").write_block(1, block_data(spec, 1))


def test_create_never_clobbers(tmp_path) -> None:
    spec = make_spec()
    write_store(tmp_path / "s.zarr", spec)
    with pytest.raises(StoreExistsError, match="--overwrite"):
        LabelStore.create(tmp_path / "s.zarr", spec, make_manifest())
    LabelStore.create(tmp_path / "s.zarr", spec, make_manifest(), overwrite=True)
    assert LabelStore.open(tmp_path / "s.zarr").uncommitted_blocks() == [0, 1, 2]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("precious")
    with pytest.raises(StoreExistsError, match="not an fkd label store"):
        LabelStore.create(tmp_path / "notes", spec, make_manifest(), overwrite=True)
    assert (tmp_path / "notes" / "thesis.tex").read_text() == "precious"


def test_opening_a_missing_path_names_it(tmp_path) -> None:
    with pytest.raises(StoreError, match="no such store"):
        LabelStore.open(tmp_path / "nowhere.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreFormatError, match="zarr.json is missing"):
        LabelStore.open(tmp_path / "plain")


def test_wide_class_counts_use_wide_indices(tmp_path) -> None:
    spec = make_spec(codec=CodecSpec("marginal_smoothing", 21_843, k=5))
    store = LabelStore.create(tmp_path / "s.zarr", spec, make_manifest())
    data = block_data(spec, 0)
    store.write_block(0, data)
    batch = LabelStore.open(tmp_path / "s.zarr").read_images(range(4))
    assert batch.labels["index"].dtype == np.uint16
    np.testing.assert_array_equal(batch.labels["index"], data.labels["index"])
    assert get_codec(spec.codec).decode(batch.labels).shape == (4, 8, 21_843)


def zstd_bomb_header(declared: int) -> bytes:
    """A zstd frame header (single segment, 8-byte content size) declaring ``declared`` bytes."""
    import numcodecs

    real = numcodecs.Zstd(level=1).encode(np.zeros(16, np.uint32).tobytes())
    return b"\x28\xb5\x2f\xfd" + bytes([0b1110_0000]) + declared.to_bytes(8, "little") + real[6:]


def test_a_chunk_declaring_more_than_its_size_is_refused_before_allocation(tmp_path) -> None:
    import crc32c

    write_store(tmp_path / "s.zarr")
    frame = zstd_bomb_header(2**40)  # one terabyte, in a 40-byte chunk file
    chunk = tmp_path / "s.zarr" / "image_height" / "c" / "0"
    chunk.write_bytes(frame + crc32c.crc32c(frame).to_bytes(4, "little"))
    with pytest.raises(CorruptChunkError, match=r"image_height.*declares 1099511627776 bytes"):
        LabelStore.open(tmp_path / "s.zarr").read_image(0)


@pytest.mark.parametrize(
    "codec,sampler",
    [
        (CodecSpec("marginal_smoothing", 300, k=5), "fkd-rrc-v1"),
        (CodecSpec("hard", 50), "stored"),
        (CodecSpec("full", 50, k=50, value_dtype="float16"), "fkd-rrc-v1"),
    ],
)
def test_direct_shard_reads_equal_zarr_reads(tmp_path, codec, sampler) -> None:
    spec = make_spec(num_images=37, codec=codec, sampler=sampler, block_size=16)
    store = write_store(tmp_path / "s.zarr", spec)
    reader = LabelStore.open(tmp_path / "s.zarr")
    names = [name for name, layout in reader.layout.items() if layout.inner is not None]
    assert reader._row_readers(names) is not None  # the fast path is taken
    for image in range(37):
        fast = reader.read_image(image)
        for field in fast.labels:
            np.testing.assert_array_equal(
                fast.labels[field][0], store.array(f"label_{field}")[image]
            )
        if sampler == "stored":
            np.testing.assert_array_equal(fast.flips[0], store.array("crop_flip")[image])


def test_the_direct_reader_is_only_used_for_fkd_chains(tmp_path) -> None:
    from fkd.storage_formats.shard_reader import is_fkd_chain

    write_store(tmp_path / "s.zarr")
    doc = json.loads((tmp_path / "s.zarr" / "label_index" / "zarr.json").read_text())
    assert is_fkd_chain(doc)
    doc["codecs"][0]["configuration"]["codecs"][1] = {"name": "gzip", "configuration": {}}
    assert not is_fkd_chain(doc)


def test_content_hashes_are_recorded_and_checked(tmp_path) -> None:
    import dataclasses

    from fkd.storage_formats import Manifest
    from fkd.storage_formats.verify import compare_manifests

    plain = make_manifest()
    hashes = [f"{i:064x}" for i in range(10)]
    hashed = Manifest.build(plain.paths, plain.nbytes, plain.targets, sha256=hashes)
    assert hashed.digest() != plain.digest() and hashed.without_hashes() == plain
    spec = dataclasses.replace(make_spec(), manifest_digest=hashed.digest(), file_hashes=True)
    assert "image_sha256" in LabelStore.create(tmp_path / "s.zarr", spec, hashed).layout
    reader = LabelStore.open(tmp_path / "s.zarr")
    assert reader.manifest.sha256 == tuple(hashes)
    assert compare_manifests(reader, hashed) == []
    changed = Manifest.build(
        plain.paths, plain.nbytes, plain.targets, sha256=[*hashes[:-1], "f" * 64]
    )
    (problem,) = compare_manifests(reader, changed)
    assert "1 images changed content (sha256)" in problem.what and "image009" in problem.what
    with pytest.raises(ValueError, match="file_hashes"):
        LabelStore.create(tmp_path / "t.zarr", spec, plain)
