"""docs/format.md, checked: an independent reader written from the document alone.

Everything below reads stores with plain ``zarr``, ``numpy``, ``json`` and ``hashlib``
(and the raw bytes on disk), following docs/format.md: the group attributes, every
array's zarr.json, the chunk and shard bytes, the manifest and its digest, statuses,
error texts, commit markers, labels (decoded with the document's formulas) and boxes
(from its own scalar fkd-rrc-v1 sampler).  ``fkd.storage_formats`` is used only to
build stores (through ``store_factory``) and as the reference to compare against.
The Python example of section 10 of the document is executed too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from store_factory import block_data, make_manifest, make_spec, write_store

from fkd.storage_formats import (
    CodecSpec,
    LabelStore,
    Manifest,
    StoreSpec,
    UncommittedBlockError,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "format.md"

# The codecs of docs/format.md section 6, one store each with both samplers.
CODECS = {
    "hard": CodecSpec("hard", 50),
    "smoothing": CodecSpec("smoothing", 50, value_dtype="uint8"),
    "marginal_smoothing": CodecSpec("marginal_smoothing", 50, k=3, value_dtype="float16"),
    # 300 classes: a uint16 index (section 6.1).
    "marginal_renorm": CodecSpec("marginal_renorm", 300, k=3, value_dtype="uint8"),
    "full": CodecSpec("full", 50, k=50, value_dtype="float16"),
}
SAMPLERS = ("fkd-rrc-v1", "stored")
VERSIONS = (2, 3)  # the current format and the one before (section 9)
IMAGES = 6  # two blocks of 4 images (store_factory's block size): the last one is short

SPEC_KEYS = {
    "format_version",
    "num_images",
    "block_size",
    "images_per_chunk",
    "crops_per_chunk",
    "max_path_bytes",
    "file_hashes",
    "path_data_bytes",
    "manifest_digest",
    "codec",
    "crops",
    "teacher",
    "software",
    "created",
}
CODEC_KEYS = {"name", "num_classes", "k", "temperature", "value_dtype"}
CROPS_KEYS = {"crops_per_image", "scale", "ratio", "flip_prob", "seed", "sampler"}
TEACHER_KEYS = {
    "spec",
    "input_size",
    "mean",
    "std",
    "interpolation",
    "weights_sha256",
    "class_names",
    "resampling",
}
FIELDS = {
    "hard": ("index",),
    "smoothing": ("index", "value"),
    "marginal_smoothing": ("index", "value"),
    "marginal_renorm": ("index", "value"),
    "full": ("value",),
}


# Stores -----------------------------------------------------------------------------


@pytest.fixture(
    scope="module",
    params=[(c, s, v) for c in CODECS for s in SAMPLERS for v in VERSIONS],
    ids=lambda p: f"{p[0]}-{p[1]}-v{p[2]}",
)
def store_path(request, tmp_path_factory) -> Path:
    codec, sampler, version = request.param
    path = tmp_path_factory.mktemp("fmt") / "s.zarr"
    spec = make_spec(num_images=IMAGES, codec=CODECS[codec], sampler=sampler)
    if version != spec.format_version:
        spec = dataclasses.replace(spec, format_version=version)
    if sampler == "fkd-rrc-v1":  # two inner chunks per shard; the last shard has one
        spec = dataclasses.replace(spec, images_per_chunk=2)
        if version >= 3:  # 3 crops per inner chunk: 8 crops padded to 9 (section 3)
            spec = dataclasses.replace(spec, crops_per_chunk=3)
    write_store(path, spec)
    return path


def attrs(path: Path) -> dict[str, Any]:
    return json.loads((path / "zarr.json").read_bytes())["attributes"]["fkd"]


# Section 5.3: the fkd-rrc-v1 sampler, one scalar at a time -------------------------

MASK = (1 << 64) - 1
GAMMA, MUL1, MUL2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
LN2 = float.fromhex("0x1.62e42fefa39efp-1")
SQRT_HALF = float.fromhex("0x1.6a09e667f3bcdp-1")


def splitmix_finalise(z: int) -> int:
    z = ((z ^ (z >> 30)) * MUL1) & MASK
    z = ((z ^ (z >> 27)) * MUL2) & MASK
    return z ^ (z >> 31)


def bits(seed: int, image: int, crop: int, draw: int) -> int:
    h = splitmix_finalise((seed + GAMMA) & MASK)
    h = splitmix_finalise(((h ^ image) + GAMMA) & MASK)
    h = splitmix_finalise(((h ^ crop) + GAMMA) & MASK)
    return splitmix_finalise(((h ^ draw) + GAMMA) & MASK)


def unit(seed: int, image: int, crop: int, draw: int) -> float:
    return math.ldexp(float(bits(seed, image, crop, draw) >> 11), -53)


def exp_series(x: float) -> float:
    n = round(x / LN2)
    r = x - n * LN2
    acc = 1.0
    for term in range(20, 0, -1):
        acc = 1.0 + (acc * r) / float(term)
    return math.ldexp(acc, int(n))


def log_series(x: float) -> float:
    m, e = math.frexp(x)
    if m < SQRT_HALF:
        m, e = m * 2.0, e - 1
    y = (m - 1.0) / (m + 1.0)
    y2 = y * y
    acc = 1.0 / 25.0
    for term in range(11, -1, -1):
        acc = 1.0 / float(2 * term + 1) + y2 * acc
    return float(e) * LN2 + 2.0 * (y * acc)


def sampler_box(crops: dict[str, Any], image: int, crop: int, height: int, width: int):
    """Pixel (top, left, height, width) and flip of one crop."""
    seed = crops["seed"]
    flip = unit(seed, image, crop, 40) < crops["flip_prob"]
    if height == 0 or width == 0:
        return (0, 0, 0, 0), flip
    hd, wd = float(height), float(width)
    s0, s1 = crops["scale"]
    lr0, lr1 = log_series(crops["ratio"][0]), log_series(crops["ratio"][1])
    area = hd * wd
    for attempt in range(10):
        u = [unit(seed, image, crop, 4 * attempt + d) for d in range(4)]
        target = area * (s0 + (s1 - s0) * u[0])
        aspect = exp_series(lr0 + (lr1 - lr0) * u[1])
        w = float(round(math.sqrt(target * aspect)))
        h = float(round(math.sqrt(target / aspect)))
        if 0.0 < w <= wd and 0.0 < h <= hd:
            top = math.floor(u[2] * (hd - h + 1.0))
            left = math.floor(u[3] * (wd - w + 1.0))
            return (top, left, int(h), int(w)), flip
    r_min, r_max = min(crops["ratio"]), max(crops["ratio"])
    if wd / hd < r_min:
        w, h = wd, float(round(wd / r_min))
    elif wd / hd > r_max:
        w, h = float(round(hd * r_max)), hd
    else:
        w, h = wd, hd
    return (math.floor((hd - h) / 2.0), math.floor((wd - w) / 2.0), int(h), int(w)), flip


def sampler_fractions(crops, image, height, width):
    boxes = np.zeros((crops["crops_per_image"], 4))
    flips = np.zeros(crops["crops_per_image"], dtype=bool)
    for crop in range(crops["crops_per_image"]):
        (top, left, h, w), flips[crop] = sampler_box(crops, image, crop, height, width)
        if height and width:
            boxes[crop] = [top / height, left / width, h / height, w / width]
    return boxes, flips


# Section 4: manifest, digest, texts -------------------------------------------------


def nul_padded_text(row: np.ndarray) -> str:
    return bytes(row.astype(np.uint8)).rstrip(b"\x00").decode("utf-8")


def split_paths(data: np.ndarray, offsets: np.ndarray) -> list[str]:
    """Section 4.1: path i is data[offsets[i]:offsets[i + 1]], UTF-8."""
    raw = bytes(data.astype(np.uint8))
    ends = [int(o) for o in offsets]
    assert ends[0] == 0 and ends[-1] == len(raw) and ends == sorted(ends)
    return [raw[a:b].decode("utf-8") for a, b in itertools.pairwise(ends)]


def digest(paths, nbytes, targets) -> str:
    h = hashlib.sha256()
    for path, size, target in zip(paths, nbytes, targets, strict=True):
        h.update(path.encode("utf-8") + b"\t" + str(int(size)).encode("ascii") + b"\t")
        h.update(str(int(target)).encode("ascii") + b"\n")
    return "sha256:" + h.hexdigest()


# Section 6: decoding one crop at a time ---------------------------------------------


def dequantise(stored: np.ndarray, value_dtype: str) -> np.ndarray:
    if value_dtype == "uint8":
        return stored.astype(np.float32) / np.float32(255.0)
    values = stored.astype(np.float32)
    assert np.isfinite(values).all()
    return np.clip(values, np.float32(0), np.float32(1))


def decode_crop(codec: dict[str, Any], index, value) -> np.ndarray:
    name, c, k = codec["name"], codec["num_classes"], codec["k"]
    index = None if index is None else np.atleast_1d(index).astype(np.int64)
    v = None if value is None else np.atleast_1d(dequantise(value, codec["value_dtype"]))
    assert index is None or (index < c).all()
    row = np.zeros(c, dtype=np.float32)
    if name == "hard":
        row[index] = 1
    elif name == "smoothing":
        row[:] = max(np.float32(1) - v[0], np.float32(0)) / np.float32(max(c - 1, 1))
        row[index] = v
    elif name == "marginal_smoothing":
        if k < c:
            row[:] = max(np.float32(1) - v.sum(dtype=np.float32), np.float32(0)) / np.float32(c - k)
        row[index] = v
    elif name == "marginal_renorm":
        row[index] = v if v.sum(dtype=np.float32) > 0 else np.float32(1)
    else:
        row[:] = v
    total = row.sum(dtype=np.float32)
    return row / total if total > 0 else np.full(c, 1 / c, dtype=np.float32)


# Sections 3 and 3.1: what every zarr.json must say ---------------------------------

ZSTD = {"name": "zstd", "configuration": {"level": 5, "checksum": False}}
CRC = {"name": "crc32c"}
BYTES_LE = {"name": "bytes", "configuration": {"endian": "little"}}


def expected_arrays(fkd: dict[str, Any]) -> dict[str, tuple[str, list, list, list | None]]:
    """name: (data_type, shape, chunk shape, inner chunk shape or None)."""
    n, b, p = fkd["num_images"], fkd["block_size"], fkd["images_per_chunk"]
    m, total = fkd["crops"]["crops_per_image"], fkd["path_data_bytes"]
    q = fkd.get("crops_per_chunk", m)  # v3; v2's inner chunks hold all M crops
    padded = -(-m // q) * q
    codec = fkd["codec"]
    c, k = codec["num_classes"], codec["k"]
    index_dtype = "uint8" if c <= 256 else "uint16" if c <= 65536 else "uint32"
    arrays: dict[str, tuple[str, list, list, list | None]] = {
        "image_path_data": ("uint8", [total], [min(total, 2**27)], None),
        "image_path_offsets": ("uint64", [n + 1], [min(n + 1, 2**22)], None),
        "image_nbytes": ("uint64", [n], [min(n, 2**22)], None),
        "image_target": ("int32", [n], [min(n, 2**22)], None),
        "image_height": ("uint32", [n], [b], None),
        "image_width": ("uint32", [n], [b], None),
        "image_status": ("uint8", [n], [b], None),
        "image_error": ("uint8", [n, 128], [b, 128], None),
        "block_commit": ("uint8", [-(-n // b)], [1], None),
    }

    def per_crop(name: str, dtype: str, trailing: list[int]) -> None:
        arrays[name] = (dtype, [n, m, *trailing], [b, padded, *trailing], [p, q, *trailing])

    if fkd["crops"]["sampler"] == "stored":
        per_crop("crop_box", "uint16", [4])
        per_crop("crop_flip", "bool", [])
    trailing = {"hard": [], "smoothing": [], "full": [c]}.get(codec["name"], [k])
    if "index" in FIELDS[codec["name"]]:
        per_crop("label_index", index_dtype, trailing)
    if "value" in FIELDS[codec["name"]]:
        per_crop("label_value", codec["value_dtype"], trailing)
    return arrays


def check_chain(chain: list, dtype: str) -> None:
    assert chain[1:] == [ZSTD, CRC]
    if np.dtype(dtype).itemsize == 1:
        assert chain[0] in ({"name": "bytes"}, BYTES_LE)
    else:
        assert chain[0] == BYTES_LE


# Raw chunk bytes: CRC-32C and zstd frame headers (sections 3.1 and 8.3) --------------


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def zstd_content_size(frame: bytes) -> int | None:
    assert frame[:4] == b"\x28\xb5\x2f\xfd"
    descriptor = frame[4]
    fcs_flag, single, dict_flag = descriptor >> 6, (descriptor >> 5) & 1, descriptor & 3
    start = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
    width = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if width == 0:
        return None
    size = int.from_bytes(frame[start : start + width], "little")
    return size + 256 if width == 2 else size


def check_chunk(raw: bytes, decoded_nbytes: int) -> None:
    """zstd frame || crc32c(frame) LE, declaring exactly the chunk's decoded size."""
    frame, trailer = raw[:-4], raw[-4:]
    assert int.from_bytes(trailer, "little") == crc32c(frame)
    assert zstd_content_size(frame) == decoded_nbytes


# The tests -----------------------------------------------------------------------------


def test_crc32c_and_sampler_match_the_documents_test_vectors() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert bits(0, 0, 0, 0) == 0x2130748AAAC80268
    assert unit(0, 0, 0, 0) == float.fromhex("0x1.0983a45556400p-3")
    assert bits(7, 3, 5, 40) == 0x51D4CD5D31A3160A
    assert bits(2**64 - 1, 2**31 - 2, 65535, 40) == 0xD9A8766C9FEAEABE
    assert log_series(0.75) == -float.fromhex("0x1.269621134db92p-2")
    assert log_series(4 / 3) == float.fromhex("0x1.269621134db92p-2")
    assert log_series(3.0) == float.fromhex("0x1.193ea7aad030ap+0")
    assert log_series(0.5) == -LN2
    assert exp_series(-1.0) == float.fromhex("0x1.78b56362cef38p-2")
    assert exp_series(0.5) == float.fromhex("0x1.a61298e1e069cp+0")
    crops = {"seed": 123, "scale": [0.08, 1.0], "ratio": [0.75, 4 / 3], "flip_prob": 0.5}
    expected = [
        ((72, 240, 288, 255), False),
        ((106, 253, 220, 245), False),
        ((51, 184, 322, 303), False),
        ((93, 45, 253, 266), True),
        ((0, 81, 318, 283), True),
        ((68, 102, 123, 127), False),
    ]
    assert [sampler_box(crops, 42, j, 375, 500) for j in range(6)] == expected
    assert sampler_box(crops, 0, 3, 1, 1000)[0] == (0, 499, 1, 1)
    rows = [("train/n01440764/a.JPEG", 110237, 0), ("val/é.png", 5, -1)]
    assert digest(*zip(*rows, strict=True)) == (
        "sha256:b6cf9c4a4e2d7e6e012bd1cda812ca8cfe7a061997b3f2f9b699fa631b597bfd"
    )
    data = np.frombuffer(b"train/n01440764/a.JPEGval/\xc3\xa9.png", dtype=np.uint8)
    assert split_paths(data, np.array([0, 22, 32])) == [rows[0][0], rows[1][0]]
    built = Manifest.build([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    assert bytes(built.path_data) == bytes(data) and built.path_offsets.tolist() == [0, 22, 32]


def test_the_documents_example_spec_is_valid() -> None:
    section = DOC.read_text(encoding="utf-8").split("### 2.5 Example", 1)[1]
    block = re.search(r"```json\n(.*?)```", section, re.S)
    assert block is not None
    example = json.loads(block.group(1))
    assert set(example) == SPEC_KEYS and set(example["codec"]) == CODEC_KEYS
    assert set(example["crops"]) == CROPS_KEYS and set(example["teacher"]) == TEACHER_KEYS
    assert StoreSpec.from_dict(example).to_dict() == example


def test_group_attributes_follow_the_document(store_path: Path) -> None:
    doc = json.loads((store_path / "zarr.json").read_bytes())
    assert doc["zarr_format"] == 3 and doc["node_type"] == "group"
    fkd = doc["attributes"]["fkd"]
    version = fkd["format_version"]
    assert set(fkd) == (SPEC_KEYS if version == 3 else SPEC_KEYS - {"crops_per_chunk"})
    assert set(fkd["codec"]) == CODEC_KEYS
    assert set(fkd["crops"]) == CROPS_KEYS
    assert set(fkd["teacher"]) == TEACHER_KEYS
    assert version in VERSIONS
    n, b, p = fkd["num_images"], fkd["block_size"], fkd["images_per_chunk"]
    assert (n, b) == (IMAGES, 4) and p in (1, 2, 4) and b % p == 0  # as store_factory wrote it
    if version == 3:  # as written: 3 for the sampled boxes, else §3's default
        m, sampler = fkd["crops"]["crops_per_image"], fkd["crops"]["sampler"]
        default = -(-m // -(-m // 256))
        assert fkd["crops_per_chunk"] == (3 if sampler == "fkd-rrc-v1" else default)
    assert fkd["max_path_bytes"] == 64
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", fkd["manifest_digest"])
    codec, crops, teacher = fkd["codec"], fkd["crops"], fkd["teacher"]
    assert codec["name"] in FIELDS and 1 <= codec["k"] <= codec["num_classes"] <= 2**24
    assert codec["value_dtype"] in ("uint8", "float16") and codec["temperature"] > 0
    assert 0 < crops["scale"][0] <= crops["scale"][1] <= 1
    assert 0 < crops["ratio"][0] <= crops["ratio"][1]
    assert 0 <= crops["flip_prob"] <= 1 and 0 <= crops["seed"] < 2**64
    assert crops["sampler"] in SAMPLERS and 1 <= crops["crops_per_image"] <= 65536
    assert teacher["interpolation"] in ("bilinear", "bicubic")
    assert len(teacher["mean"]) == len(teacher["std"]) == 3
    # The attribute is the library's spec, key for key.
    assert fkd == LabelStore.open(store_path).spec.to_dict()


def test_every_array_has_the_documented_metadata(store_path: Path) -> None:
    fkd = attrs(store_path)
    expected = expected_arrays(fkd)
    present = {p.parent.name for p in store_path.glob("*/zarr.json")}
    assert present == set(expected)
    for name, (dtype, shape, chunks, inner) in expected.items():
        meta = json.loads((store_path / name / "zarr.json").read_bytes())
        assert meta["zarr_format"] == 3 and meta["node_type"] == "array"
        assert meta["data_type"] == dtype, name
        assert meta["shape"] == shape, name
        assert meta["chunk_grid"] == {
            "name": "regular",
            "configuration": {"chunk_shape": chunks},
        }, name
        assert meta["chunk_key_encoding"] == {
            "name": "default",
            "configuration": {"separator": "/"},
        }
        assert meta["fill_value"] == 0 and meta.get("storage_transformers", []) == []
        assert "dimension_names" not in meta or meta["dimension_names"] is None
        codecs = meta["codecs"]
        if inner is None:
            check_chain(codecs, dtype)
            continue
        assert len(codecs) == 1 and codecs[0]["name"] == "sharding_indexed", name
        config = codecs[0]["configuration"]
        assert config["chunk_shape"] == inner
        check_chain(config["codecs"], dtype)
        assert config["index_codecs"] == [BYTES_LE, CRC]
        assert config["index_location"] == "end"


def test_chunk_bytes_are_zstd_frames_with_crc32c_and_shard_indices(store_path: Path) -> None:
    fkd = attrs(store_path)
    empty = 2**64 - 1
    for name, (dtype, shape, chunks, inner) in expected_arrays(fkd).items():
        n_chunks = -(-shape[0] // chunks[0])  # one per block, but for the manifest's
        itemsize = np.dtype(dtype).itemsize
        keys = sorted(p for p in (store_path / name / "c").rglob("*") if p.is_file())
        for key in keys:
            coords = [int(part) for part in key.relative_to(store_path / name / "c").parts]
            assert len(coords) == len(chunks) and coords[0] < n_chunks
            assert all(c == 0 for c in coords[1:])  # trailing axes are never split
            raw = key.read_bytes()
            if inner is None:
                check_chunk(raw, math.prod(chunks) * itemsize)
                continue
            count = (chunks[0] // inner[0]) * (chunks[1] // inner[1])  # C order: images, crops
            index_bytes, trailer = raw[-(16 * count + 4) : -4], raw[-4:]
            assert int.from_bytes(trailer, "little") == crc32c(index_bytes)
            index = np.frombuffer(index_bytes, dtype="<u8").reshape(count, 2)
            stored = 0
            for offset, nbytes in index.tolist():
                if offset == empty:
                    assert nbytes == empty
                    continue
                check_chunk(raw[offset : offset + nbytes], math.prod(inner) * itemsize)
                stored += nbytes
            assert stored + 16 * count + 4 == len(raw)  # nothing but chunks and the index


def test_manifest_digest_recomputed_from_the_arrays(store_path: Path) -> None:
    group = zarr.open_group(store_path, mode="r", use_consolidated=False)
    fkd = group.attrs["fkd"]
    paths = split_paths(group["image_path_data"][...], group["image_path_offsets"][...])
    nbytes, targets = group["image_nbytes"][...], group["image_target"][...]
    assert digest(paths, nbytes, targets) == fkd["manifest_digest"]
    manifest = make_manifest(fkd["num_images"])
    assert paths == list(manifest.paths)
    assert digest(paths, nbytes, targets) == LabelStore.open(store_path).manifest.digest()


def test_labels_boxes_and_statuses_match_the_library(store_path: Path) -> None:
    group = zarr.open_group(store_path, mode="r", use_consolidated=False)
    fkd = group.attrs["fkd"]
    codec, crops = fkd["codec"], fkd["crops"]
    n, m, c = fkd["num_images"], crops["crops_per_image"], codec["num_classes"]
    assert (group["block_commit"][...] == 1).all()
    status = group["image_status"][...]
    assert (status == 1).all()
    assert not group["image_error"][...].any()
    height, width = group["image_height"][...], group["image_width"][...]
    stored = {f: group[f"label_{f}"][...] for f in FIELDS[codec["name"]]}
    if "index" in stored:
        assert stored["index"].dtype == np.dtype("uint8" if c <= 256 else "uint16")
    if codec["value_dtype"] == "uint8" and "value" in stored:
        assert stored["value"].min() >= 1  # section 6.2: a stored uint8 value is never 0

    reader = LabelStore.open(store_path)
    order = np.array([4, 0, 5, 3, 1, 2])
    batch = reader.read_images(order)
    np.testing.assert_array_equal(batch.status, status[order])
    np.testing.assert_array_equal(batch.height, height[order])
    for field, values in stored.items():
        np.testing.assert_array_equal(batch.labels[field], values[order])
        assert batch.labels[field].dtype == values.dtype

    ours = np.empty((n, m, c), dtype=np.float32)
    for i in range(n):
        for j in range(m):
            index = stored["index"][i, j] if "index" in stored else None
            value = stored["value"][i, j] if "value" in stored else None
            ours[i, j] = decode_crop(codec, index, value)
    theirs = reader.decode_labels(batch.labels)
    assert theirs.dtype == np.float32 and theirs.shape == (n, m, c)
    np.testing.assert_allclose(theirs, ours[order], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ours.sum(axis=-1), 1.0, atol=1e-5)

    if crops["sampler"] == "stored":
        grid = group["crop_box"][...]
        assert grid.dtype == np.uint16
        boxes, flips = grid.astype(np.float64) / 65535, group["crop_flip"][...]
        for block in range(-(-n // fkd["block_size"])):
            data = block_data(reader.spec, block)
            start = block * fkd["block_size"]
            written = boxes[start : start + len(data.height)]
            assert np.abs(written - data.boxes).max() <= 0.5 / 65535 + 1e-12
            np.testing.assert_array_equal(flips[start : start + len(data.height)], data.flips)
    else:
        boxes, flips = np.zeros((n, m, 4)), np.zeros((n, m), dtype=bool)
        for i in range(n):
            boxes[i], flips[i] = sampler_fractions(crops, i, int(height[i]), int(width[i]))
    np.testing.assert_array_equal(batch.boxes, boxes[order])  # bit for bit
    np.testing.assert_array_equal(batch.flips, flips[order])


def test_uncommitted_blocks_are_visible_and_refused(tmp_path: Path) -> None:
    spec = make_spec(codec=CODECS["smoothing"])
    write_store(tmp_path / "s.zarr", spec, blocks=[0, 2])
    group = zarr.open_group(tmp_path / "s.zarr", mode="r", use_consolidated=False)
    committed = group["block_commit"][...] == 1
    assert committed.tolist() == [True, False, True]
    assert not (tmp_path / "s.zarr" / "block_commit" / "c" / "1").exists()
    status = group["image_status"][...]
    assert (status[4:8] == 0).all() and (status[:4] == 1).all() and (status[8:] == 1).all()
    reader = LabelStore.open(tmp_path / "s.zarr")
    assert reader.uncommitted_blocks() == np.flatnonzero(~committed).tolist()
    for image in range(spec.num_images):
        if committed[image // spec.block_size]:
            reader.read_image(image)
        else:
            with pytest.raises(UncommittedBlockError):
                reader.read_image(image)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_failed_images_error_text_and_zero_size_boxes(tmp_path: Path, sampler: str) -> None:
    spec = make_spec(codec=CODECS["marginal_renorm"], sampler=sampler)
    store = write_store(tmp_path / "s.zarr", spec, blocks=[1, 2])
    reason = "x" + "é" * 100  # 201 UTF-8 bytes: the 128-byte cut falls inside an é
    data = block_data(spec, 0)
    store.write_block(
        0,
        dataclasses.replace(
            data,
            height=np.array([30, 0, 1, 50]),
            width=np.array([60, 0, 300, 50]),
            status=np.array([1, 2, 1, 1], dtype=np.uint8),
            errors=["", reason, "", ""],
        ),
    )
    group = zarr.open_group(tmp_path / "s.zarr", mode="r", use_consolidated=False)
    raw = group["image_error"][...]
    assert raw.shape == (10, 128) and not raw[np.arange(10) != 1].any()
    expected = ""
    for char in reason:  # the longest prefix of whole characters within 128 bytes
        if len((expected + char).encode("utf-8")) > 128:
            break
        expected += char
    assert nul_padded_text(raw[1]) == expected and len(expected.encode()) == 127
    status = group["image_status"][...]
    reader = LabelStore.open(tmp_path / "s.zarr")
    assert reader.failures() == [(1, expected)]
    assert [int(i) for i in np.flatnonzero(status == 2)] == [1]
    if sampler == "fkd-rrc-v1":
        boxes, flips = sampler_fractions(attrs(tmp_path / "s.zarr")["crops"], 1, 0, 0)
        assert not boxes.any()
        batch = reader.read_image(1)
        np.testing.assert_array_equal(batch.boxes[0], boxes)
        np.testing.assert_array_equal(batch.flips[0], flips)
        for image in (0, 2):  # image 2 (1 x 300) takes the fallback
            boxes, flips = sampler_fractions(
                attrs(tmp_path / "s.zarr")["crops"],
                image,
                int(group["image_height"][image]),
                int(group["image_width"][image]),
            )
            np.testing.assert_array_equal(reader.read_image(image).boxes[0], boxes)
            np.testing.assert_array_equal(reader.read_image(image).flips[0], flips)


_EXAMPLE: dict[str, Any] = {}


def doc_example() -> dict[str, Any]:
    """Execute (once) the Python example of section 10 of docs/format.md."""
    if not _EXAMPLE:
        text = DOC.read_text(encoding="utf-8")
        section = text.split("## 10. Reading a store with plain zarr and numpy", 1)[1]
        code = re.search(r"```python\n(.*?)```", section, re.S)
        assert code is not None
        exec(compile(code.group(1), str(DOC), "exec"), _EXAMPLE)
    return _EXAMPLE


def test_the_documents_example_reader(store_path: Path) -> None:
    example = doc_example()
    indices = [5, 0, 4, 3]
    got = example["read_fkd"](store_path, indices)
    reader = LabelStore.open(store_path)
    batch = reader.read_images(indices)
    assert got["paths"] == [make_manifest(reader.spec.num_images).paths[i] for i in indices]
    np.testing.assert_array_equal(got["status"], batch.status)
    np.testing.assert_array_equal(got["boxes"], batch.boxes)
    np.testing.assert_array_equal(got["flips"], batch.flips)
    np.testing.assert_allclose(
        got["probs"], reader.decode_labels(batch.labels), rtol=1e-6, atol=1e-7
    )


def test_the_documents_example_sampler_matches_ours() -> None:
    rrc_v1_box = doc_example()["rrc_v1_box"]
    crops = {"seed": 2**63 + 5, "scale": [0.08, 1.0], "ratio": [0.75, 4 / 3], "flip_prob": 0.3}
    for size in [(375, 500), (1, 1000), (1000, 1), (0, 7), (33, 34)]:
        for crop in range(8):
            assert rrc_v1_box(crops, 42, crop, *size) == sampler_box(crops, 42, crop, *size)


def test_the_documents_example_refuses_uncommitted_blocks(tmp_path: Path) -> None:
    example = doc_example()
    write_store(tmp_path / "s.zarr", make_spec(codec=CODECS["hard"]), blocks=[0])
    example["read_fkd"](tmp_path / "s.zarr", [0, 3])
    with pytest.raises(ValueError, match="uncommitted"):
        example["read_fkd"](tmp_path / "s.zarr", [4])
