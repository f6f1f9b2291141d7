"""``fkd inspect``: what a store holds, how big it is, and what its labels look like.

Torch-free.  ``summarize_store`` returns plain JSON-ready data; ``summary_lines``
renders it for people.  Label statistics are computed on a sample of
committed, decodable images (the first ``sample_images`` of them).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fkd.storage_formats.label_codecs import dequantize_values
from fkd.storage_formats.label_store import LabelStore
from fkd.storage_formats.layout import STATUS_OK, chunk_key
from fkd.storage_formats.store_location import is_url

DEFAULT_SAMPLE_IMAGES = 256
SAMPLE_CROPS = 8192  # crops whose labels are summarised, at most
DECODED_ROWS = 256  # dense rows decoded at a time


def summarize_store(
    store: LabelStore, sample_images: int = DEFAULT_SAMPLE_IMAGES
) -> dict[str, Any]:
    spec = store.spec
    committed = store.committed_blocks()
    disk = store_bytes(store)
    crops = spec.num_images * spec.crops_per_image
    dense_bytes = crops * spec.codec.num_classes * 4
    return {
        "store": store.location,
        "format_version": spec.format_version,
        "num_images": spec.num_images,
        "crops_per_image": spec.crops_per_image,
        "codec": spec.codec.name,
        "k": spec.codec.k,
        "num_classes": spec.codec.num_classes,
        "temperature": spec.codec.temperature,
        "value_dtype": spec.codec.value_dtype,
        "teacher": {k: v for k, v in spec.teacher.to_dict().items() if k != "class_names"},
        "crops": spec.crops.to_dict(),
        "block_size": spec.block_size,
        "committed_blocks": len(committed),
        "total_blocks": spec.num_blocks,
        "uncommitted_blocks": store.uncommitted_blocks()[:20],
        "failed_images": [
            {"path": store.manifest.paths[i], "reason": reason} for i, reason in store.failures()
        ]
        if committed
        else [],
        "bytes_on_disk": disk,
        "bytes_per_crop": disk / crops if disk is not None else None,
        "compression_vs_dense_float32": dense_bytes / disk if disk else None,
        "labels": label_statistics(store, sample_images) if committed else None,
        "software": dict(spec.software),
        "created": spec.created,
    }


def label_statistics(store: LabelStore, sample_images: int) -> dict[str, Any]:
    """Mean top-1 probability, entropy, stored top-K mass and top-1 agreement with targets.

    At most ``SAMPLE_CROPS`` crops (fewer images when M is large), decoded to dense rows
    ``DECODED_ROWS`` at a time, so time and memory stay bounded at any M and C (dense
    rows of 256 images x 500 crops x 21,841 classes would be 11 GB).
    """
    m = store.spec.crops_per_image
    indices = sample_indices(store, min(sample_images, max(1, SAMPLE_CROPS // m)))
    if indices.size == 0:
        return {"images_sampled": 0}
    batch = store.read_images(indices)
    rows = indices.size * m
    flat = {name: values.reshape(rows, *values.shape[2:]) for name, values in batch.labels.items()}
    targets = np.repeat(store.per_image("image_target")[indices].astype(np.int64), m)
    top1_sum = entropy_sum = 0.0
    agree = np.zeros(0, dtype=bool)
    for start in range(0, rows, DECODED_ROWS):
        dense = store.decode_labels({k: v[start : start + DECODED_ROWS] for k, v in flat.items()})
        top1_sum += float(dense.max(axis=-1).sum(dtype=np.float64))
        entropy_sum += float(entropy(dense).sum(dtype=np.float64))
        part = targets[start : start + DECODED_ROWS]
        labelled = part >= 0
        agree = np.concatenate([agree, dense.argmax(axis=-1)[labelled] == part[labelled]])
    stats: dict[str, Any] = {
        "images_sampled": int(indices.size),
        "mean_top1_probability": top1_sum / rows,
        "mean_entropy_nats": entropy_sum / rows,
        "stored_topk_mass": stored_mass(store, batch.labels),
    }
    if agree.size:
        stats["top1_agrees_with_target"] = float(agree.mean())
    return stats


def sample_indices(store: LabelStore, count: int) -> NDArray[np.int64]:
    """The first ``count`` ok images of committed blocks."""
    committed = store.committed_mask(refresh=True)
    chosen: list[int] = []
    status = store.per_image("image_status")
    for block in np.flatnonzero(committed):
        start, stop = store.block_range(int(block))
        chosen += [i for i in range(start, stop) if status[i] == STATUS_OK]
        if len(chosen) >= count:
            break
    return np.asarray(chosen[:count], dtype=np.int64)


def entropy(dense: NDArray[np.float32]) -> NDArray[np.float32]:
    safe = np.where(dense > 0, dense, 1.0)
    return -(dense * np.log(safe)).sum(axis=-1)


def stored_mass(store: LabelStore, labels: dict[str, NDArray[Any]]) -> float | None:
    if "value" not in labels:
        return None
    values = dequantize_values(labels["value"], store.spec.codec.value_dtype)
    return float(values.reshape(*values.shape[:2], -1).sum(axis=-1).mean())


def store_bytes(store: LabelStore) -> int | None:
    """Bytes of a local store's own files: every array's metadata and chunk (or shard)
    files, found by name (one ``stat`` each, no walk through the ~5 folders per block
    of the chunk tree); a zipped store's one file; ``None`` for a URL.  Debris of killed
    runs (``*.partial`` temporaries) is not counted."""
    location = store.location
    if is_url(location):
        return None
    if os.path.isfile(location):
        return os.path.getsize(location)
    keys = ["zarr.json"]
    for layout in store.layout.values():
        keys.append(f"{layout.name}/zarr.json")
        chunks = -(-layout.shape[0] // layout.outer[0])
        keys += [chunk_key(layout, chunk) for chunk in range(chunks)]
    total = 0
    for key in keys:
        try:
            total += os.stat(os.path.join(location, key)).st_size
        except FileNotFoundError:
            continue
    return total


def summary_lines(summary: dict[str, Any]) -> list[str]:
    teacher, crops, labels = summary["teacher"], summary["crops"], summary["labels"]
    lines = [
        f"{summary['store']}  (fkd label store, format v{summary['format_version']})",
        f"  images {summary['num_images']}, crops per image {summary['crops_per_image']}, "
        f"blocks committed {summary['committed_blocks']}/{summary['total_blocks']}",
        f"  codec {summary['codec']}  K={summary['k']}  C={summary['num_classes']}  "
        f"T={summary['temperature']}  values {summary['value_dtype']}",
        f"  teacher {teacher['spec']}  input {teacher['input_size']} {teacher['interpolation']}  "
        f"mean {teacher['mean']}  std {teacher['std']}  weights sha256 "
        f"{teacher['weights_sha256'] or '-'}",
        f"  crops: sampler {crops['sampler']}  seed {crops['seed']}  scale {crops['scale']}  "
        f"ratio {[round(r, 4) for r in crops['ratio']]}  flip {crops['flip_prob']}",
    ]
    if summary["bytes_on_disk"] is not None:
        lines.append(
            f"  size {summary['bytes_on_disk']} bytes on disk, "
            f"{summary['bytes_per_crop']:.2f} bytes/crop, "
            f"{summary['compression_vs_dense_float32']:.0f}x smaller than dense float32"
        )
    failed = summary["failed_images"]
    lines.append(
        f"  failed images {len(failed)}"
        + "".join(f"\n    {f['path']}: {f['reason']}" for f in failed[:10])
    )
    if labels and labels.get("images_sampled"):
        line = (
            f"  labels (first {labels['images_sampled']} images): mean top-1 probability "
            f"{labels['mean_top1_probability']:.3f}, entropy "
            f"{labels['mean_entropy_nats']:.3f} nats"
        )
        if labels["stored_topk_mass"] is not None:
            line += f", stored top-K mass {labels['stored_topk_mass']:.3f}"
        if "top1_agrees_with_target" in labels:
            line += f", top-1 = target on {labels['top1_agrees_with_target']:.1%} of crops"
        lines.append(line)
    return lines
