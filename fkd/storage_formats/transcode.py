"""Re-encode a store made with the ``full`` codec into any other codec, without the teacher.

``fkd generate --label-type full --value-dtype float16`` keeps every class's
probability.  From it, a store with any other codec (``marginal_smoothing`` top-5,
``hard``...) is computed by decoding each crop's stored distribution and encoding
it again: the teacher is not run, and the crops (boxes, flips, failed images)
are the very same.  This is how codec ablations stay cheap: one teacher pass,
many label stores.  The only difference from generating with the codec directly
is that top-K is taken over float16 probabilities rather than the teacher's float32.

With ``codec=None`` the stored labels of any codec are copied as they are: this
upgrades a store of an older format version to the current one.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from fkd.storage_formats.block_commit import BlockData
from fkd.storage_formats.errors import StoreError
from fkd.storage_formats.label_store import LabelStore
from fkd.storage_formats.layout import STATUS_OK
from fkd.storage_formats.spec import FORMAT_VERSION, CodecSpec
from fkd.storage_formats.store_location import is_url

__all__ = ["transcode_store"]


def transcode_store(
    source: LabelStore, out: str | Path, codec: CodecSpec | None, overwrite: bool = False
) -> LabelStore:
    """Write ``out`` in the current format: ``source``'s crops and images with labels
    re-encoded by ``codec``, or copied as stored when ``codec`` is ``None``."""
    if not is_url(out) and not is_url(source.location) and _same_path(source.location, out):
        raise StoreError(
            f"--out {out} is the source store itself; write the new store to another path "
            "(then move it over the old one if you want it there)"
        )
    if codec is None:
        codec = source.spec.codec
    elif source.spec.codec.name != "full":
        raise StoreError(
            f"{source.location} stores {source.spec.codec.name} labels, which lost the "
            "tail of each distribution; re-encoding needs a store made with --label-type full"
        )
    if not source.is_complete():
        raise StoreError(
            f"{source.location} has uncommitted blocks {source.uncommitted_blocks()[:5]}; "
            "finish generating it first"
        )
    if codec.num_classes != source.spec.codec.num_classes:
        raise StoreError(
            f"codec for {codec.num_classes} classes; {source.location} has "
            f"{source.spec.codec.num_classes}"
        )
    if codec.temperature != source.spec.codec.temperature:
        raise StoreError(
            f"temperature {codec.temperature} differs from the store's "
            f"{source.spec.codec.temperature}; stored probabilities cannot be re-tempered exactly"
        )
    # An older store takes the current version's chunking; a current one keeps its own.
    base = source.spec
    if base.format_version != FORMAT_VERSION:
        base = dataclasses.replace(base, images_per_chunk=0, crops_per_chunk=0)
    spec = dataclasses.replace(
        base, codec=codec, format_version=FORMAT_VERSION, **source.manifest.spec_fields()
    )
    target = LabelStore.create(out, spec, source.manifest, overwrite=overwrite)
    reasons = dict(source.failures())
    for block in range(source.num_blocks):
        target.write_block(block, _block_data(source, target, block, reasons))
    return target


def _block_data(
    source: LabelStore, target: LabelStore, block: int, reasons: dict[int, str]
) -> BlockData:
    start, stop = source.block_range(block)
    batch = source.read_images(np.arange(start, stop))
    ok = batch.status == STATUS_OK
    if target.spec.codec == source.spec.codec:
        labels = dict(batch.labels)
    else:
        labels = {}
        for field, values in target.codec.encode(source.decode_labels(batch.labels)).items():
            values[~ok] = 0  # failed images hold zeros, as the generator writes them
            labels[field] = values
    stored = target.spec.crops.sampler == "stored"
    return BlockData(
        height=batch.height,
        width=batch.width,
        status=batch.status,
        errors=[reasons.get(i, "") for i in range(start, stop)],
        labels=labels,
        boxes=batch.boxes if stored else None,
        flips=batch.flips if stored else None,
    )


def _same_path(a: str | Path, b: str | Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)
