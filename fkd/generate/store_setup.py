"""Create or resume the store: the ``StoreSpec`` a run asks for (``build_spec``), the store
created atomically or resumed when its parameters match (``open_or_create_store``), and the
``--reference`` store whose boxes a run replays (``open_reference``)."""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

import fkd
from fkd import crops as crop_ops
from fkd.exceptions import OptionError
from fkd.generate.config import GenerateConfig
from fkd.generate.errors import GenerateError
from fkd.images import ImageSource
from fkd.storage_formats import CropSpec, LabelStore, StoreSpec
from fkd.storage_formats.errors import WRITE_ERRNOS
from fkd.storage_formats.label_codecs import codec_class, codec_spec
from fkd.storage_formats.spec import diff_generation
from fkd.storage_formats.zarr_store import is_url
from fkd.teachers import LoadedTeacher

DEFAULT_CROP_INTERPOLATION = "bilinear"

# Building the spec ---------------------------------------------------------


def build_spec(
    config: GenerateConfig,
    source: ImageSource,
    teacher: LoadedTeacher,
    crops: CropSpec | None = None,
    device: torch.device | str = "cpu",
) -> StoreSpec:
    # The crops are resampled bilinearly on the device's fast path unless --interpolation
    # bicubic asks for the exact per-crop path: --check-fidelity measures the difference
    # (on real photos 0.004-0.005 nats for either fast path, much of it the rounding to
    # whole grey levels, against 0.39 nats for top-5 encoding of 1000 classes).  The
    # path ``device`` gets is recorded, and every writer of the store cuts with it.
    interpolation = config.interpolation or DEFAULT_CROP_INTERPOLATION
    info = replace(
        teacher.info,
        input_size=config.input_size or teacher.info.input_size,
        interpolation=interpolation,
        resampling=crop_ops.resampling_for(device, interpolation).name,
    )
    classes = teacher.num_classes
    if codec_class(config.label_type).k_for(config.topk, classes) > classes:
        raise OptionError(
            "--topk",
            f"{config.topk} is more than the {classes} classes of teacher "
            f"{teacher.info.spec!r}; give 1..{classes}",
        )
    codec = codec_spec(
        config.label_type,
        teacher.num_classes,
        config.topk,
        temperature=config.temperature,
        value_dtype=config.value_dtype,
    )
    crops = crops or CropSpec(
        crops_per_image=config.crops_per_image,
        scale=config.scale,
        ratio=config.ratio,
        flip_prob=config.flip_prob,
        seed=config.seed,
    )
    manifest = source.manifest
    return StoreSpec(
        **manifest.spec_fields(),
        codec=codec,
        crops=crops,
        teacher=info,
        block_size=config.block_size,
        software=software_versions(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def software_versions() -> dict[str, str]:
    import numcodecs
    import torchvision
    import zarr

    return {
        "fkd": fkd.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "zarr": zarr.__version__,
        "numcodecs": numcodecs.__version__,
        "numpy": np.__version__,
    }


# Opening the store -----------------------------------------------------------


def open_or_create_store(
    out: str, spec: StoreSpec, source: ImageSource, overwrite: bool
) -> LabelStore:
    """Resume a store made with the same parameters, or create it atomically.

    Creation writes into a temporary sibling directory and renames it into
    place, so concurrent shards never see a half-made store.
    """
    if not is_url(out) and Path(out).exists() and not Path(out).is_dir():
        raise GenerateError(
            f"--out {out} is a file, not a label store (a directory); choose another path"
        )
    if overwrite or not _store_exists(out):
        created = _create_atomically(out, spec, source, overwrite)
        if created is not None:
            return created
    store = LabelStore.open(out, mode="r+")
    if store.spec.format_version < spec.format_version:  # blocks are written alike: resume it
        spec = spec.at_version(store.spec.format_version)
    # The crop path is the store's, whatever device resumes it (None: chosen per device).
    spec = replace(spec, teacher=replace(spec.teacher, resampling=store.spec.teacher.resampling))
    differing = diff_generation(store.spec, spec)
    if differing:
        old, new = store.spec.generation_dict(), spec.generation_dict()
        name = differing[0]
        raise GenerateError(
            f"{out} was made with different parameters ({name}: {_lookup(old, name)!r} in the "
            f"store, {_lookup(new, name)!r} now; {len(differing)} differ in all); re-run with "
            "the store's parameters to resume, or pass --overwrite to start again"
        )
    return store


def _store_exists(out: str) -> bool:
    if is_url(out):
        return False
    path = Path(out)
    return path.exists() and any(path.iterdir()) if path.is_dir() else path.exists()


def _create_atomically(
    out: str, spec: StoreSpec, source: ImageSource, overwrite: bool
) -> LabelStore | None:
    if is_url(out):
        return LabelStore.create(out, spec, source.manifest, overwrite=overwrite)
    target = Path(out)
    if overwrite and target.exists():
        LabelStore.create(target, spec, source.manifest, overwrite=True)
        return LabelStore.open(target, mode="r+")
    # Unique per call: two runs in one process (threads) must not share a staging folder.
    staging = target.with_name(f".{target.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        LabelStore.create(staging, spec, source.manifest, overwrite=True)
    except BaseException as exc:  # disk full, interrupted: leave nothing half-made behind
        shutil.rmtree(staging, ignore_errors=True)
        refusal = _creation_refused(exc, target)
        if refusal is not None:
            raise refusal from exc
        raise
    try:
        if target.exists():
            target.rmdir()  # an empty directory only; raises if someone filled it meanwhile
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        return None  # another shard created it first: open theirs
    return LabelStore.open(target, mode="r+")


def _creation_refused(exc: BaseException, target: Path) -> GenerateError | None:
    """A one-line error naming ``--out``'s folder when the file system refused to create the
    store there (read-only, no permission, full), rather than the staging folder it never saw."""
    cause = exc if isinstance(exc, OSError) else exc.__cause__
    if not isinstance(cause, OSError):
        return None
    if cause.errno in WRITE_ERRNOS:
        what, fix = WRITE_ERRNOS[cause.errno]
    elif cause.errno in (errno.EACCES, errno.EPERM):
        what, fix = "permission denied", "make {store} writable"
    else:
        return None
    folder = target.parent
    return GenerateError(
        f"--out {target}: cannot create the label store in {folder}: {what}; "
        f"{fix.format(store=folder)}, or choose another --out"
    )


def _lookup(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part, {}) if isinstance(data, dict) else {}
    return data


def open_reference(config: GenerateConfig, source: ImageSource) -> LabelStore | None:
    if config.reference is None:
        return None
    reference = LabelStore.open(config.reference)
    if reference.manifest.without_hashes() != source.manifest.without_hashes():
        raise GenerateError(
            f"--reference {config.reference} was made from a different image list than "
            f"{config.data}; a reference store must describe the same images"
        )
    if not reference.is_complete():
        raise GenerateError(
            f"--reference {config.reference} has uncommitted blocks "
            f"{reference.uncommitted_blocks()[:5]}; finish it first"
        )
    return reference


__all__ = [
    "DEFAULT_CROP_INTERPOLATION",
    "build_spec",
    "open_or_create_store",
    "open_reference",
    "software_versions",
]
