"""A corpus of malicious and broken label stores, generated (nothing binary is committed).

    python tests/corpus/make_corpus.py DIR

writes one store per case under ``DIR/<case>.zarr``, plus ``DIR/outside/secret.txt``
(a file outside every store, which symlinked cases point at) and ``DIR/cases.json``:
for each case, the stage that must refuse it (``open``: ``LabelStore.open``; ``read``:
reading its images or manifest) and a fragment the one-line refusal must contain.
Pickle payloads, when a case carries one, would create ``DIR/canary`` if they ever ran.

The image corpus (bombs, truncated, zero-byte, wrongly named, animated, 16-bit, CMYK,
EXIF-rotated files) is in ``tests/test_images.py`` and ``tests/test_generate.py``;
pickled teacher weights and legacy FKD files are built by ``tests/test_corpus.py``
with torch.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from store_factory import make_spec, write_store

from fkd.storage_formats import LabelStore
from fkd.storage_formats.layout import store_layout
from fkd.storage_formats.path_bytes import join_paths
from fkd.storage_formats.zarr_store import chunk_codecs

Edit = Callable[[Path, Path], None]
CASES: dict[str, tuple[Edit, str, str]] = {}


def case(stage: str, fragment: str) -> Callable[[Edit], Edit]:
    def register(edit: Edit) -> Edit:
        CASES[edit.__name__] = (edit, stage, fragment)
        return edit

    return register


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def group(store: Path, change: Callable[[dict[str, Any]], None]) -> None:
    edit_json(store / "zarr.json", change)


def fkd_attrs(store: Path, change: Callable[[dict[str, Any]], None]) -> None:
    group(store, lambda d: change(d["attributes"]["fkd"]))


class Canary:
    """Unpickling this creates the file it names."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def chunk_files(store: Path, array: str) -> list[Path]:
    return sorted(p for p in (store / array / "c").rglob("*") if p.is_file())


def with_crc(payload: bytes) -> bytes:
    import google_crc32c

    return payload + google_crc32c.value(payload).to_bytes(4, "little")


# --------------------------------------------------------------------------- metadata


@case("open", "numcodecs.pickle")
def pickle_codec(store: Path, root: Path) -> None:
    payload = pickle.dumps(np.array([Canary(root / "canary")], dtype=object))
    for chunk in chunk_files(store, "label_value"):
        chunk.write_bytes(payload)
    edit_json(
        store / "label_value" / "zarr.json",
        lambda d: d["codecs"][0]["configuration"]["codecs"].insert(
            1, {"name": "numcodecs.pickle", "configuration": {"protocol": 5}}
        ),
    )


@case("open", "'object' is refused")
def object_dtype(store: Path, root: Path) -> None:
    edit_json(store / "label_index" / "zarr.json", lambda d: d.update(data_type="object"))


@case("open", "codec 'evil.exec' is refused")
def unknown_codec(store: Path, root: Path) -> None:
    edit_json(
        store / "label_index" / "zarr.json",
        lambda d: d["codecs"][0]["configuration"]["codecs"].insert(1, {"name": "evil.exec"}),
    )


@case("open", "num_images")
def absurd_shape(store: Path, root: Path) -> None:
    fkd_attrs(store, lambda a: a.update(num_images=2**40))
    for array in store.iterdir():
        if (array / "zarr.json").is_file():
            edit_json(array / "zarr.json", lambda d: d.update(shape=[2**40, *d["shape"][1:]]))


@case("open", "chunk shape")
def absurd_chunks(store: Path, root: Path) -> None:
    edit_json(
        store / "label_value" / "zarr.json",
        lambda d: d["chunk_grid"]["configuration"].update(chunk_shape=[2**31, 8, 5]),
    )


@case("open", "block_size")
def absurd_block_size(store: Path, root: Path) -> None:
    fkd_attrs(store, lambda a: a.update(block_size=2**40))


@case("open", "k must be")
def negative_k(store: Path, root: Path) -> None:
    fkd_attrs(store, lambda a: a["codec"].update(k=-3))


@case("open", "k must be")
def huge_k(store: Path, root: Path) -> None:
    fkd_attrs(store, lambda a: a["codec"].update(k=2**62))


@case("open", "num_classes")
def zero_classes(store: Path, root: Path) -> None:
    fkd_attrs(store, lambda a: a["codec"].update(num_classes=0))


@case("open", "num_classes")
def huge_classes(store: Path, root: Path) -> None:
    fkd_attrs(store, lambda a: a["codec"].update(num_classes=2**40))


@case("open", "crops_per_image")
def huge_m(store: Path, root: Path) -> None:
    fkd_attrs(store, lambda a: a["crops"].update(crops_per_image=2**40))


@case("open", "over the")
def huge_metadata(store: Path, root: Path) -> None:
    (store / "zarr.json").write_bytes(b'{"pad": "' + b" " * (17 * 2**20) + b'"}')


@case("open", "not valid JSON")
def garbage_metadata(store: Path, root: Path) -> None:
    (store / "label_index" / "zarr.json").write_bytes(b"\x80\x04\x95 not json")


# --------------------------------------------------------------------------- chunks


@case("read", "declares 1099511627776 bytes")
def zstd_bomb(store: Path, root: Path) -> None:
    """A 40-byte chunk whose zstd frame says it holds a terabyte."""
    import numcodecs

    real = numcodecs.Zstd(level=1).encode(np.zeros(16, np.uint32).tobytes())
    frame = b"\x28\xb5\x2f\xfd" + bytes([0b1110_0000]) + (2**40).to_bytes(8, "little") + real[6:]
    (store / "image_height" / "c" / "0").write_bytes(with_crc(frame))


@case("read", "declares no content size")
def zstd_stream_without_size(store: Path, root: Path) -> None:
    """A streamed zstd frame: no declared size, so nothing bounds what it inflates to."""
    header = b"\x28\xb5\x2f\xfd" + bytes([0b0000_0000, 0x58])  # no size field, 8 MiB window
    (store / "image_height" / "c" / "0").write_bytes(with_crc(header + bytes(64)))


@case("read", "inflates past")
def gzip_bomb(store: Path, root: Path) -> None:
    """An array switched to gzip, whose 16-byte chunk inflates to 64 MiB (a 64 KiB file)."""
    edit_json(
        store / "image_height" / "zarr.json",
        lambda d: d.update(
            codecs=[
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "gzip", "configuration": {"level": 9}},
                {"name": "crc32c"},
            ]
        ),
    )
    # The other chunks become valid gzip of their 16 bytes, so the bomb is the only
    # failure whichever chunk zarr happens to decode first.
    for chunk in chunk_files(store, "image_height"):
        chunk.write_bytes(with_crc(gzip.compress(bytes(16))))
    (store / "image_height" / "c" / "0").write_bytes(with_crc(gzip.compress(bytes(64 * 2**20), 9)))


@case("read", "leads outside the store")
def symlinked_chunk(store: Path, root: Path) -> None:
    target = chunk_files(store, "label_index")[0]
    target.unlink()
    target.symlink_to(root / "outside" / "secret.txt")


@case("read", "leads outside the store")
def symlinked_folder(store: Path, root: Path) -> None:
    folder = store / "label_value" / "c"
    outside = root / "outside" / "label_value_c"
    folder.rename(outside)
    folder.symlink_to(outside, target_is_directory=True)


@case("read", "'..'")
def dotdot_manifest(store: Path, root: Path) -> None:
    write_paths(store, "../../outside/secret.txt")


@case("read", "must be relative")
def absolute_manifest(store: Path, root: Path) -> None:
    write_paths(store, str(root / "outside" / "secret.txt"))


def write_paths(store: Path, first: str) -> None:
    """Replace image 0's manifest path, through zarr: the spec's path length, the path
    arrays and their checksums all agree, as a hostile writer would make them."""
    handle = LabelStore.open(store, mode="r+")
    paths = list(handle.manifest.paths)
    paths[0] = first
    data, offsets = join_paths(paths)
    spec = dataclasses.replace(handle.spec, path_data_bytes=int(data.size))
    group = zarr.open_group(store, mode="r+")
    group.attrs["fkd"] = spec.to_dict()
    for name, values in (("image_path_data", data), ("image_path_offsets", offsets)):
        layout = store_layout(spec)[name]
        array = group.create_array(
            name,
            shape=layout.shape,
            dtype=layout.dtype,
            fill_value=0,
            overwrite=True,
            **chunk_codecs(layout),
        )
        array[:] = values


def make_corpus(root: Path) -> dict[str, dict[str, str]]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "outside").mkdir(exist_ok=True)
    (root / "outside" / "secret.txt").write_text("a private key\n")
    spec = make_spec()
    index = {}
    for name, (edit, stage, fragment) in CASES.items():
        store = root / f"{name}.zarr"
        write_store(store, spec)
        edit(store, root)
        index[name] = {"stage": stage, "fragment": fragment, "store": str(store)}
    (root / "cases.json").write_text(json.dumps(index, indent=2))
    return index


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    made = make_corpus(Path(sys.argv[1]))
    print(f"{len(made)} cases in {sys.argv[1]}", file=sys.stderr)
    os.sync()
