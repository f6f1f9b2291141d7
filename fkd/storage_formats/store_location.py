"""Where a store lives: a local folder, a ``.zip`` or a URL, opened as a zarr ``Store``.

Also what opening checks before any chunk is read: the location itself, every
array's metadata (``validate_store_metadata``), and, before creating, that a local
folder holds nothing but an old fkd store.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from fkd.storage_formats.contained_local_store import ContainedLocalStore
from fkd.storage_formats.errors import StoreError, StoreExistsError
from fkd.storage_formats.layout import store_layout
from fkd.storage_formats.spec import StoreSpec
from fkd.storage_formats.validation import (
    check_array_metadata,
    parse_json_document,
    spec_from_group_metadata,
)


def is_url(location: str | Path | Store) -> bool:
    return isinstance(location, str) and "://" in location


def open_zarr_store(location: str | Path | Store, read_only: bool) -> Store:
    """A zarr ``Store`` for a local path or an fsspec URL (http://, s3://, memory://...)."""
    if isinstance(location, Store):
        return location
    if is_url(location):
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(str(location), read_only=read_only)
    if str(location).endswith(".zip"):
        from zarr.storage import ZipStore

        if not read_only:
            raise StoreError(f"{location}: a zipped store is read-only; unzip it to write")
        zipped: Store = sync(ZipStore.open(Path(location), mode="r", read_only=True))
        return zipped
    return ContainedLocalStore(Path(location), read_only=read_only)


def read_key(store: Store, key: str) -> bytes | None:
    """The raw bytes of one key of ``store``, or ``None`` if it is absent."""
    try:
        buffer = sync(store.get(key, prototype=default_buffer_prototype()))
    except StoreError:
        raise
    except Exception as exc:  # network and file-system errors of any store backend
        raise StoreError(f"cannot read {key!r} from {store}: {type(exc).__name__}: {exc}") from exc
    return None if buffer is None else buffer.to_bytes()


def validate_store_metadata(store: Store, where: str) -> StoreSpec:
    """Validate the group and every expected array's metadata; return the spec."""
    group_doc = parse_json_document(read_key(store, "zarr.json"), f"{where}/zarr.json")
    spec = spec_from_group_metadata(group_doc, where)
    for name, layout in store_layout(spec).items():
        key = f"{name}/zarr.json"
        doc = parse_json_document(read_key(store, key), f"{where}/{key}")
        check_array_metadata(doc, layout, where)
    return spec


def check_local_location(path: Path) -> None:
    if not path.exists():
        raise StoreError(f"{path}: no such store (check the path)")
    if path.is_file() and path.suffix != ".zip":
        raise StoreError(f"{path} is a file, not a store (a directory or a .zip)")


def prepare_local_directory(path: Path, overwrite: bool) -> None:
    """Refuse to clobber anything that is not an fkd store; remove an old store if asked."""
    if not path.exists():
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    is_store = (path / "zarr.json").is_file() and looks_like_fkd_group(path / "zarr.json")
    if not is_store:
        raise StoreExistsError(
            f"{path} exists and is not an fkd label store; refusing to overwrite it "
            "(choose another path)"
        )
    if not overwrite:
        raise StoreExistsError(
            f"{path} already holds an fkd label store; pass --overwrite to replace it"
        )
    shutil.rmtree(path)


def looks_like_fkd_group(zarr_json: Path) -> bool:
    try:
        doc = parse_json_document(zarr_json.read_bytes(), str(zarr_json))
        spec_from_group_metadata(doc, str(zarr_json))
    except (OSError, StoreError):
        return False
    return True
