"""``fkd publish``: a copy of a store ready to share, with a dataset card and checksums.

The published folder is the store itself (readable by fkd, by any Zarr v3
reader, over HTTP or any fsspec URL) plus two plain files at its root:
``README.md`` (a dataset card: provenance, format, how to load) and
``SHA256SUMS`` (``sha256sum -c`` compatible, over every other file).
Optionally a single zip of the same files, readable with zarr's ZipStore.
"""

from __future__ import annotations

import shutil
import warnings
import zipfile
from pathlib import Path

import zarr

from fkd.storage_formats.checksums import SUMS, checksum_lines
from fkd.storage_formats.errors import StoreError, StoreExistsError
from fkd.storage_formats.label_store import LabelStore
from fkd.storage_formats.verify import verify_store

CARD = "README.md"


def publish_store(source: str, out: Path, make_zip: bool = False) -> list[Path]:
    """Copy a complete store to ``out`` with a card and checksums; return what was written."""
    store = LabelStore.open(source)
    if not store.is_complete():
        raise StoreError(
            f"{source} has uncommitted blocks {store.uncommitted_blocks()[:5]}; "
            "only a complete store can be published"
        )
    if out.exists():
        raise StoreExistsError(f"{out} already exists; choose a new folder to publish into")
    problems = verify_store(source)
    if problems:
        raise StoreError(
            f"{source} fails `fkd verify` ({len(problems)} problem(s), first: "
            f"{problems[0].line()}); nothing published: regenerate the damaged blocks, "
            "then publish"
        )
    staging = out.with_name(f".{out.name}.publishing")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(source, staging)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        why = (exc.strerror or str(exc)).lower()
        raise StoreError(
            f"cannot write into {out.parent.resolve()}: {why}; nothing "
            "published: choose an --out in a folder you can write to (and with room for "
            f"a copy of {source})"
        ) from exc
    with warnings.catch_warnings():  # zarr notes consolidated metadata is a v3 extension
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(staging))
    (staging / CARD).write_text(dataset_card(store, out.name))
    (staging / SUMS).write_text(checksum_lines(staging))
    staging.rename(out)
    written = [out]
    if make_zip:
        written.append(zip_store(out, out.with_name(f"{out.name}.zip")))
    return written


def zip_store(folder: Path, target: Path) -> Path:
    """All files of ``folder`` in one uncompressed zip (chunks are already compressed)."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(folder).as_posix())
    return target


def dataset_card(store: LabelStore, name: str) -> str:
    spec = store.spec
    codec, crops, teacher = spec.codec, spec.crops, spec.teacher
    software = ", ".join(f"{k} {v}" for k, v in spec.software.items()) or "-"
    rows = [
        ("teacher", f"`{teacher.spec}` (weights sha256 `{teacher.weights_sha256 or '-'}`)"),
        (
            "teacher input",
            f"{teacher.input_size} px, {teacher.interpolation}, "
            f"mean {list(teacher.mean)}, std {list(teacher.std)}",
        ),
        (
            "labels",
            f"`{codec.name}`, K={codec.k}, C={codec.num_classes}, "
            f"temperature {codec.temperature}, {codec.value_dtype} values",
        ),
        (
            "crops",
            f"sampler `{crops.sampler}`, seed {crops.seed}, scale {list(crops.scale)}, "
            f"ratio {[round(r, 4) for r in crops.ratio]}, flip {crops.flip_prob}",
        ),
        ("images manifest", f"digest `{spec.manifest_digest}`"),
        ("created", f"{spec.created or '-'} with {software}"),
    ]
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    return f"""# {name}: fkd soft-label store

Teacher soft labels for {spec.num_images} images, {spec.crops_per_image} random-resized crops
each, in the fkd label store format v{spec.format_version} (a Zarr v3 group; the format is
specified in fkd's `docs/format.md`).

| | |
|---|---|
{table}

## Load with fkd

```python
from fkd.storage_formats import LabelStore
store = LabelStore.open("{name}")          # or an http(s):// or s3:// URL of this folder
batch = store.read_images([0])
dense = store.decode_labels(batch.labels)  # [1, {spec.crops_per_image}, {codec.num_classes}]
```

## Load with plain zarr

```python
import zarr
group = zarr.open_group("{name}", mode="r")
spec = group.attrs["fkd"]               # everything above, as JSON
index = group["label_index"][0]         # [M, K] class indices of image 0
```

Boxes are derived from the seed and the stored image sizes (`image_height`,
`image_width`) by the sampler named above; see `docs/format.md`.

## Check it

`fkd verify {name}` reads every chunk and checks every checksum; `sha256sum -c {SUMS}` checks
the files.
"""
