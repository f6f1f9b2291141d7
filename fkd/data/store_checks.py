"""The checks a store must pass before a student trains on it with these images.

Opening a ``CropLabelDataset`` refuses, with one line naming the first offenders: a
``crops_per_visit`` above the store's M, a store with uncommitted blocks, images of the
store missing from the folder (or another size in bytes), and images recorded as failed
(unless skipped).  ``select_paths`` gathers the usable images' relative paths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from fkd.exceptions import UserInputError
from fkd.storage_formats import LabelStore, Manifest, StoreSpec
from fkd.storage_formats.layout import STATUS_FAILED

SHOWN = 3  # offenders named in a refusal


class StoreMismatchError(UserInputError):
    """The label store cannot be used with these images or settings; the message says why."""


def check_crops_per_visit(location: str, spec: StoreSpec, crops_per_visit: int) -> None:
    m = spec.crops_per_image
    if not 1 <= crops_per_visit <= m:
        raise StoreMismatchError(
            f"crops_per_visit={crops_per_visit} is not possible with {location}, which holds "
            f"{m} crops per image; use 1..{m}"
        )


def check_complete(store: LabelStore) -> None:
    missing = store.uncommitted_blocks()
    if missing:
        raise StoreMismatchError(
            f"{store.location} is not complete: {len(missing)} of {store.num_blocks} blocks "
            f"are not committed (e.g. blocks {missing[:SHOWN]}); finish it by re-running the "
            "same `fkd generate` command, then train"
        )


def select_paths(
    manifest: Manifest, rows: NDArray[np.int64]
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """The paths of ``rows`` as (bytes back to back, offsets), gathered without a loop."""
    starts, lengths = manifest.path_offsets[:-1][rows], manifest.path_lengths[rows]
    offsets = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    gather = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    return manifest.path_data[gather], offsets


def match_manifest(
    store: LabelStore, scanned: Manifest, check_sizes: bool, root: str | Path
) -> None:
    """The scanned source's path of each store image, matched by relative path.

    Refuses images of the store missing from ``root``, and (with ``check_sizes``)
    images whose size in bytes changed since the store was made.
    """
    stored = store.manifest
    # The usual case, answered without a str per path:
    if stored.same_paths(scanned) and (
        not check_sizes or np.array_equal(stored.nbytes, scanned.nbytes)
    ):
        return
    found = dict(zip(scanned.paths, scanned.nbytes.tolist(), strict=True))
    missing = [p for p in stored.paths if p not in found]
    if missing:
        raise StoreMismatchError(
            f"{store.location} does not match the images in {root}: {len(missing)} of its "
            f"{len(stored)} images are missing there, e.g. {missing[:SHOWN]}; pass the "
            "folder (or file list) the store was made from"
        )
    if check_sizes:
        changed = [
            (p, int(n), found[p])
            for p, n in zip(stored.paths, stored.nbytes.tolist(), strict=True)
            if found[p] != n
        ]
        if changed:
            shown = ", ".join(
                f"{p!r} ({n} bytes in the store, {now} now)" for p, n, now in changed[:SHOWN]
            )
            raise StoreMismatchError(
                f"{store.location} does not match the images in {root}: {len(changed)} of its "
                f"{len(stored)} images changed size since it was made, e.g. {shown}; pass the "
                "folder the store was made from, or for a resized copy of the same images "
                "`fkd train --no-check-sizes` (check_sizes=False): boxes replay as fractions "
                "of each image"
            )


def usable_images(store: LabelStore, skip_failed: bool) -> NDArray[np.int64]:
    """Store indices of the images to train on: all, or all but the failed ones."""
    status = store.per_image("image_status")
    failed = np.flatnonzero(status == STATUS_FAILED)
    if failed.size and not skip_failed:
        paths = store.manifest.paths
        reasons = dict(store.failures())
        shown = ", ".join(f"{paths[i]!r} ({reasons.get(int(i), '?')})" for i in failed[:SHOWN])
        raise StoreMismatchError(
            f"{store.location} records {failed.size} image(s) that failed to decode when it "
            f"was made, e.g. {shown}; train without them with `fkd train --skip-failed` "
            "(skip_failed=True)"
        )
    usable = np.flatnonzero(status != STATUS_FAILED).astype(np.int64)
    if usable.size == 0:
        raise StoreMismatchError(f"{store.location}: no image of the store is usable")
    return usable
