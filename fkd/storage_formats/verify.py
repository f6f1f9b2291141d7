"""``fkd verify``: read every chunk of a store and check every invariant of the format.

Checks, block by block: the commit marker; that every chunk of a committed
block exists (fkd writes all of them, zeros included, so a lost file is
corruption, not fill values); every chunk's crc32c (by decoding it); statuses;
label indices below C, stored values finite and in [0, 1], decoded rows that
are distributions; stored boxes inside the image.  Optionally, that a
manifest scanned from the image folder matches the store's.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fkd.storage_formats.block_chunk_reader import decode_block, is_fkd_block_chain
from fkd.storage_formats.checksums import check_checksums
from fkd.storage_formats.crop_sampler import grid_to_fractions
from fkd.storage_formats.errors import CorruptChunkError, StoreError
from fkd.storage_formats.label_codecs import dequantize_values
from fkd.storage_formats.label_store import LabelStore
from fkd.storage_formats.layout import (
    COMMIT_ARRAY,
    STATUS_FAILED,
    STATUS_OK,
    block_arrays,
    chunk_key,
    label_array_name,
)
from fkd.storage_formats.manifest import Manifest
from fkd.storage_formats.shard_reader import is_fkd_chain
from fkd.storage_formats.store_location import is_url, read_key

SUM_TOLERANCE = 1e-3
DENSE_CHECKED_IMAGES = 4  # per block, decoded to dense rows
MAX_LISTED = 10


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a store: where (block, image, array) and what."""

    where: str
    what: str
    block: int | None = None  # the block at fault, when one is

    def line(self) -> str:
        return f"{self.where}: {self.what}"


def verify_store(
    location: str | Path | LabelStore, manifest: Manifest | None = None
) -> list[Problem]:
    """Every problem found in the store at ``location`` (an empty list if it is sound).

    Linear in the store's bytes: the manifest and the commit markers are read once,
    then each committed block's chunks once.  Links and published checksums are
    checked too when ``location`` is a local folder.
    """
    try:
        store = location if isinstance(location, LabelStore) else LabelStore.open(location)
    except StoreError as exc:
        return [Problem(str(location), str(exc))]
    local = isinstance(location, (str, Path)) and not is_url(location) and Path(location).is_dir()
    location = str(store.location if isinstance(location, LabelStore) else location)
    problems = check_links(Path(location)) if local else []
    problems += check_commit_markers(store)
    manifest_problems = check_manifest(store)
    names = ImageNames(store if not manifest_problems else None)
    try:
        committed = store.committed_mask(refresh=True)
    except CorruptChunkError as exc:
        return [*problems, Problem(f"array {COMMIT_ARRAY!r}", exc.what), *manifest_problems]
    checked = structured_arrays(store)
    for block in np.flatnonzero(committed):
        problems += check_block(store, int(block), names, checked)
    problems += manifest_problems
    if manifest is not None and not manifest_problems:
        problems += compare_manifests(store, manifest)
    if local:
        problems += [Problem("checksums", line) for line in check_checksums(Path(location))]
    return problems


def check_links(root: Path) -> list[Problem]:
    """Symlinks under a local store whose targets lie outside it (readers refuse them)."""
    real_root = os.path.realpath(root)
    problems = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            if not path.is_symlink():
                continue
            real = os.path.realpath(path)
            if not real.startswith(real_root + os.sep):
                problems.append(
                    Problem(
                        str(path.relative_to(root)),
                        f"a symlink leading outside the store (to {real}); readers refuse it: "
                        "replace it with the file itself or regenerate the store",
                    )
                )
    return problems[:MAX_LISTED]


def check_commit_markers(store: LabelStore) -> list[Problem]:
    try:
        markers = np.asarray(store.array(COMMIT_ARRAY)[...])
    except Exception as exc:
        return [Problem(f"array {COMMIT_ARRAY!r}", f"unreadable: {exc}")]
    problems = [
        Problem(_block_name(store, int(b)), f"commit marker holds {int(markers[b])}, not 0 or 1")
        for b in np.flatnonzero(markers > 1)
    ]
    problems += [
        Problem(
            _block_name(store, int(b)),
            "not committed (its writer did not finish: resume "
            "with the same `fkd generate` command)",
        )
        for b in np.flatnonzero(markers == 0)
    ]
    return problems


def check_manifest(store: LabelStore) -> list[Problem]:
    """The manifest, read once: paths valid (relative, normalised, no '..') and unique."""
    try:
        duplicates = store.manifest.duplicate_paths()
    except CorruptChunkError as exc:
        return [Problem("manifest", exc.what)]
    except StoreError as exc:
        return [Problem("manifest", str(exc))]
    if duplicates:
        return [Problem("manifest", f"{len(duplicates)} paths listed twice, e.g. {duplicates[:3]}")]
    return []


class ImageNames:
    """Names images in problems: ``index 'path'``, or ``index`` when the manifest is damaged."""

    def __init__(self, store: LabelStore | None) -> None:
        self.store = store

    def __call__(self, index: int) -> str:
        if self.store is None:
            return f"image {index}"
        return f"image {index} {self.store.manifest.paths[index]!r}"


def structured_arrays(store: LabelStore) -> frozenset[str]:
    """The block arrays written with fkd's own chain, whose chunk structure verify checks."""
    backend = store.group.store_path.store
    names = set()
    for layout in block_arrays(store.layout):
        try:
            doc = json.loads(read_key(backend, f"{layout.name}/zarr.json") or b"{}")
        except ValueError:
            continue
        if not isinstance(doc, dict):
            continue
        if is_fkd_chain(doc) if layout.inner is not None else is_fkd_block_chain(doc):
            names.add(layout.name)
    return frozenset(names)


def check_block(
    store: LabelStore,
    block: int,
    names: ImageNames | None = None,
    structured: frozenset[str] | None = None,
) -> list[Problem]:
    """Existence, structure and checksums of every chunk of ``block``, then its contents.

    Each chunk is read once: arrays with fkd's own chain are decoded from those bytes
    (``decode_block``: structure and every crc32c checked); any other allowlisted
    chain goes through zarr.
    """
    where = _block_name(store, block)
    backend = store.group.store_path.store
    structured = structured_arrays(store) if structured is None else structured
    start, stop = store.block_range(block)
    problems = []
    arrays: dict[str, NDArray[Any]] = {}
    for layout in block_arrays(store.layout):
        key = chunk_key(layout, block)
        try:
            raw = read_key(backend, key)
            if raw is None:
                problems.append(
                    Problem(where, f"array {layout.name!r}: chunk file {key} is missing")
                )
            elif layout.name in structured:
                arrays[layout.name] = decode_block(raw, layout, stop - start)
            else:
                arrays[layout.name] = np.asarray(store.array(layout.name)[start:stop])
        except StoreError as exc:
            what = exc.what if isinstance(exc, CorruptChunkError) else str(exc)
            problems.append(Problem(where, f"array {layout.name!r}: {what}"))
        except ValueError as exc:
            problems.append(Problem(where, f"array {layout.name!r}: chunk file {key} {exc}"))
        except Exception as exc:  # zarr's decode errors, for the other chains
            problems.append(Problem(where, f"array {layout.name!r}: unreadable chunk ({exc})"))
    if not problems:
        problems = check_contents(store, block, arrays, names or ImageNames(None))
    return [dataclasses.replace(problem, block=block) for problem in problems]


def check_contents(
    store: LabelStore, block: int, arrays: dict[str, NDArray[Any]], names: ImageNames
) -> list[Problem]:
    start, _ = store.block_range(block)
    status = arrays["image_status"]
    problems = [
        Problem(
            names(start + int(row)),
            f"status {int(status[row])} in a committed block (1 = ok, 2 = failed)",
        )
        for row in np.flatnonzero((status != STATUS_OK) & (status != STATUS_FAILED))
    ]
    ok = status == STATUS_OK
    sizes_bad = ok & ((arrays["image_height"] == 0) | (arrays["image_width"] == 0))
    if store.spec.crops.boxes_stored:  # stored boxes are fractions: sizes may be unknown
        sizes_bad &= False
    problems += [
        Problem(names(start + int(r)), "ok but has a zero size") for r in np.flatnonzero(sizes_bad)
    ]
    problems += check_labels(store, block, arrays, ok)
    if store.spec.crops.boxes_stored:
        problems += check_boxes(store, block, arrays, ok)
    return problems[: MAX_LISTED * 4]


def check_labels(
    store: LabelStore, block: int, arrays: dict[str, NDArray[Any]], ok: NDArray[np.bool_]
) -> list[Problem]:
    where = _block_name(store, block)
    codec = store.codec
    labels = {f.name: arrays[label_array_name(f.name)][ok] for f in codec.fields()}
    problems = []
    if "index" in labels and labels["index"].size:
        top = int(labels["index"].max())
        if top >= codec.num_classes:
            problems.append(Problem(where, f"label index {top} >= num_classes {codec.num_classes}"))
    if "value" in labels and labels["value"].size:
        raw = labels["value"]
        if raw.dtype.kind == "f" and not np.isfinite(raw).all():
            return [*problems, Problem(where, "label values hold NaN or infinity")]
        values = dequantize_values(raw, codec.spec.value_dtype)
        if raw.dtype.kind == "f" and ((raw < 0).any() or (raw > 1).any()):
            problems.append(Problem(where, "label values outside [0, 1]"))
        if (
            codec.name in ("smoothing", "marginal_smoothing")
            and (values.sum(axis=-1) > 1 + codec.spec.k * 1e-2).any()
        ):
            problems.append(Problem(where, "kept label values sum to more than 1"))
    if problems:
        return problems
    # The checks above bound every stored value; decoding densely ([B, M, C] floats, most of
    # verify's time if done for all) checks the decoder's output on a few images per block.
    dense = codec.decode({name: values[:DENSE_CHECKED_IMAGES] for name, values in labels.items()})
    if not np.allclose(dense.sum(axis=-1), 1.0, atol=SUM_TOLERANCE) or (dense < 0).any():
        problems.append(Problem(where, "decoded labels are not probability distributions"))
    return problems


def check_boxes(
    store: LabelStore, block: int, arrays: dict[str, NDArray[Any]], ok: NDArray[np.bool_]
) -> list[Problem]:
    boxes = grid_to_fractions(arrays["crop_box"][ok])
    top, left, height, width = np.moveaxis(boxes, -1, 0)
    outside = (height <= 0) | (width <= 0) | (top + height > 1 + 1e-4) | (left + width > 1 + 1e-4)
    if outside.any():
        return [
            Problem(
                _block_name(store, block),
                f"{int(outside.sum())} stored boxes are empty or leave the image",
            )
        ]
    return []


def compare_manifests(store: LabelStore, scanned: Manifest) -> list[Problem]:
    """Differences between the store's manifest and one scanned from the image folder."""
    stored = store.manifest
    problems = compare_hashes(stored, scanned)
    if (
        stored.same_paths(scanned)
        and np.array_equal(stored.nbytes, scanned.nbytes)
        and np.array_equal(stored.targets, scanned.targets)
    ):
        return problems
    mine, theirs = set(stored.paths), set(scanned.paths)
    missing = sorted(mine - theirs)
    extra = sorted(theirs - mine)
    if missing:
        problems.append(
            Problem(
                "data",
                f"{len(missing)} images of the store are missing from "
                f"the folder, e.g. {missing[:3]}",
            )
        )
    if extra:
        problems.append(
            Problem(
                "data", f"{len(extra)} images in the folder are not in the store, e.g. {extra[:3]}"
            )
        )
    sizes = dict(zip(scanned.paths, scanned.nbytes.tolist(), strict=True))
    changed = [
        p
        for p, n in zip(stored.paths, stored.nbytes.tolist(), strict=True)
        if p in sizes and sizes[p] != n
    ]
    if changed:
        problems.append(
            Problem(
                "data",
                f"{len(changed)} images changed size since the store was made, e.g. {changed[:3]}",
            )
        )
    if not problems:
        problems.append(Problem("data", "the folder's targets differ from the store's manifest"))
    return problems


def compare_hashes(stored: Manifest, scanned: Manifest) -> list[Problem]:
    """Images whose content hash changed, when both manifests have hashes."""
    if stored.digests is None or scanned.digests is None:
        return []
    if stored.same_paths(scanned):
        rows = np.flatnonzero((stored.digests != scanned.digests).any(axis=1))
        changed = [stored.paths[int(i)] for i in rows]
    else:
        now = dict(zip(scanned.paths, map(bytes, scanned.digests), strict=True))
        changed = [
            p
            for p, h in zip(stored.paths, map(bytes, stored.digests), strict=True)
            if p in now and now[p] != h
        ]
    if not changed:
        return []
    return [
        Problem(
            "data",
            f"{len(changed)} images changed content (sha256) since the store "
            f"was made, e.g. {changed[:3]}",
        )
    ]


def _block_name(store: LabelStore, block: int) -> str:
    start, stop = store.block_range(block)
    return f"block {block} (images {start}..{stop - 1})"
