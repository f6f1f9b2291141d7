"""Writing a block: every block array as whole shards, then, last, its commit marker.

The write protocol: ``LabelStore.create`` writes the metadata and the manifest;
then each block's single writer calls ``write_block``.  Readers refuse images in
blocks without a marker, so a block cut short by a crash is never read; resume
redoes exactly the uncommitted blocks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from zarr.core.sync import sync

from fkd.storage_formats import crop_sampler
from fkd.storage_formats.errors import StoreError, write_failure
from fkd.storage_formats.layout import (
    COMMIT_ARRAY,
    COMMITTED,
    STATUS_FAILED,
    STATUS_OK,
    chunk_key,
    encode_error_text,
    label_array_name,
)
from fkd.storage_formats.store_handle import StoreHandle


@dataclass(frozen=True)
class BlockData:
    """Everything one block's writer produces, for images [start, stop) of the block.

    ``labels`` maps each codec field to ``[n, M, ...]``; ``boxes`` (fractions,
    ``[n, M, 4]``) and ``flips`` (``[n, M]``) are given only when the spec
    stores boxes (``sampler == "stored"``).  ``errors`` holds one reason per
    failed image, "" for the others.
    """

    height: NDArray[Any]
    width: NDArray[Any]
    status: NDArray[Any]
    errors: Sequence[str]
    labels: Mapping[str, NDArray[Any]]
    boxes: NDArray[Any] | None = None
    flips: NDArray[Any] | None = None


class BlockWriter(StoreHandle):
    """The writing side of a ``LabelStore``: one block at a time, by its only writer."""

    def write_block(self, block: int, data: BlockData) -> None:
        """Write every array of ``block`` (whole shards), then its commit marker.

        The caller must be the block's only writer.  Writing a committed block
        again is allowed (a re-run after a lost worker) and must give the
        same bytes: generation is deterministic.
        """
        if self.read_only:
            raise StoreError(f"{self.location}: opened read-only; open with mode='r+' to write")
        start, stop = self.block_range(block)
        arrays = self._block_arrays(block, data, stop - start)
        fresh = not self.is_committed(block)
        try:
            for name, values in arrays.items():
                self._write_rows(name, block, values, fresh)
            self._array(COMMIT_ARRAY)[block] = COMMITTED
            if self._committed is not None:
                self._committed[block] = True
        except OSError as exc:  # disk full, file-size limit, I/O error: the block stays open
            failure = write_failure(exc, self.location)
            if failure is None:
                raise
            raise failure from exc
        finally:
            self._per_image.clear()

    def _write_rows(self, name: str, block: int, values: NDArray[Any], fresh: bool) -> None:
        """Write one array's rows of ``block``: its whole chunk or shard.

        zarr reads an existing shard before replacing it and merges the two, so a
        shard left by a killed run could give other bytes than a first write.  An
        uncommitted (``fresh``) block's old shard is therefore deleted first: no
        reader may read it and this is its only writer.  A torn shard of a committed
        block (a crash without fsync, a damaged disk) cannot be read and must not
        stop a rewrite: it is deleted too and the shard written whole.
        """
        start, stop = self.block_range(block)
        array = self._array(name)
        key = chunk_key(self.layout[name], block)
        if fresh:
            sync(self.group.store_path.store.delete(key))
        try:
            array[start:stop] = values
        except OSError:
            raise
        except Exception:
            sync(self.group.store_path.store.delete(key))
            array[start:stop] = values

    def _block_arrays(self, block: int, data: BlockData, count: int) -> dict[str, NDArray[Any]]:
        """Validate one block's data and return it by array name."""
        m = self.spec.crops_per_image
        where = f"{self.location}: block {block}"
        status = np.asarray(data.status, dtype=np.uint8)
        if status.shape != (count,) or not np.isin(status, (STATUS_OK, STATUS_FAILED)).all():
            raise ValueError(f"{where}: status must be {count} values of ok (1) or failed (2)")
        if len(data.errors) != count:
            raise ValueError(f"{where}: {len(data.errors)} error strings for {count} images")
        arrays: dict[str, NDArray[Any]] = {
            "image_height": np.asarray(data.height, dtype=np.uint32),
            "image_width": np.asarray(data.width, dtype=np.uint32),
            "image_status": status,
            "image_error": np.stack([encode_error_text(e) for e in data.errors]),
        }
        for field in self.codec.fields():
            values = np.asarray(data.labels[field.name])
            _check_label_field(values, field.dtype, (count, m, *field.shape), where, field.name)
            if (
                field.name == "index"
                and values.size
                and int(values.max()) >= self.codec.num_classes
            ):
                raise ValueError(f"{where}: label index {int(values.max())} >= num_classes")
            arrays[label_array_name(field.name)] = values
        if self.spec.crops.boxes_stored:
            if data.boxes is None or data.flips is None:
                raise ValueError(f"{where}: this store keeps boxes; give boxes and flips")
            arrays["crop_box"] = crop_sampler.fractions_to_grid(data.boxes)
            arrays["crop_flip"] = np.asarray(data.flips, dtype=bool)
        for name, values in arrays.items():
            expected = (count, *self.layout[name].shape[1:])
            if values.shape != expected:
                raise ValueError(f"{where}: {name} has shape {values.shape}, expected {expected}")
        return arrays


def _check_label_field(
    values: NDArray[Any], dtype: np.dtype[Any], shape: tuple[int, ...], where: str, name: str
) -> None:
    if values.dtype != dtype or values.shape != shape:
        raise ValueError(
            f"{where}: label field {name!r} is {values.dtype}{list(values.shape)}, "
            f"expected {dtype}{list(shape)}"
        )
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise ValueError(f"{where}: label field {name!r} holds NaN or infinity; nothing committed")
