"""``CropLabelDataset``: an image's scheduled crops, cut from one decode, with their stored labels.

The FKD student's dataset.  Opening checks that the store and the image folder agree
(``fkd.data.store_checks``); ``dataset[i]`` decodes image ``i`` once, cuts the crops
``crop_schedule`` names for this visit (``fkd.crops.datasets.CropDataset.cut``, the
cutter every student shares) and returns them with their labels as stored.  A
DataLoader batch is read from the store in one ``read_crops`` call (``__getitems__``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import Dataset

from fkd.crops.datasets import CropDataset
from fkd.crops.schedule import crop_schedule
from fkd.data.decoding import decode_or_raise, for_device, read_file
from fkd.data.store_checks import (
    check_complete,
    check_crops_per_visit,
    match_manifest,
    select_paths,
    usable_images,
)
from fkd.images import ImageSource, scan_source
from fkd.storage_formats import CodecSpec, LabelStore, StoreSpec

# Per-image arrays a reader needs: read once by the dataset, handed to its workers.
READ_PER_IMAGE = ("image_status", "image_height", "image_width")


class CropLabelDataset(CropDataset, Dataset[dict[str, Any]]):
    """Image ``i``'s scheduled crops, cut from one decode, with their stored labels.

    ``root`` is the image folder (or file list) as ``fkd.images.scan_source``
    takes it; ``store`` a store path, zip, fsspec URL or open ``LabelStore``.
    Images are matched by relative path, so the folder may hold more images
    than the store, in any order.  Opening refuses, with one line naming the
    first offenders: images of the store missing from the folder or with
    another size in bytes (``check_sizes=False`` accepts a resized or
    re-encoded copy of the same images: boxes are fractions, so they replay on
    any size), a store with uncommitted blocks, a store recording failed
    images (``skip_failed=True`` leaves them out), and ``crops_per_visit``
    above the store's M.

    ``dataset[i]`` returns ``{"images": float32 [N, 3, S, S] in 0..255 (not
    normalised), "labels": {field: ndarray [N, ...]} as stored, "target": int
    (-1 if none), "image_index": store index, "crops": int64 [N] stored-crop
    numbers}``.  ``transform``, if given, is applied to each crop
    (``[3, S, S]`` float in 0..255 in, the same shape out): augmentation after
    the crop, such as colour jitter.  ``with_labels=False`` skips the label
    read (``"labels"`` is then ``{}``; boxes still come from the store).
    ``uint8_crops=True`` gives ``"images"`` as uint8 instead (the same whole
    grey levels, a quarter of the bytes to move to the main process; convert
    with ``.float()`` after ``.to(device)``, as ``fkd train`` does): only with
    ``"uint8-bilinear"``, without ``transform`` and without ``device_decode``
    (``fkd.crops.datasets.CropDataset``).

    Cutting: boxes are fractions, turned into pixels of the image actually
    decoded, and cut by ``fkd.crops.cut`` with ``resampling`` (a name of
    ``fkd.crops.RESAMPLING_REGISTRY``; None: the CPU worker's,
    ``resampling_for("cpu")`` = ``"uint8-bilinear"``), the cutter the hard-label
    and online-KD students (``fkd.crops.datasets.SampledCropDataset``) share, so
    all three cut the same pixels.  ``"roi-align-bilinear"`` is the teacher's
    path when ``fkd generate`` ran on a GPU (a student crop then equals the crop
    the teacher labelled, to float rounding), but it is 4-6x slower on a CPU
    worker (``benchmarks/loader_bench.py``).

    ``device_decode=True`` moves decoding and cutting off the worker: items
    then carry the image file's bytes (``"encoded"``, for plain JPEGs) or its
    decoded pixels (``"pixels"``, for anything else) and the crops' fraction
    ``"boxes"`` and ``"flips"`` instead of ``"images"``; ``decode_on_device``
    turns a collated batch into images on the training device (nvjpeg on CUDA).

    The visit is the epoch: ``set_epoch`` for direct indexing, or the
    ``ScheduledIndex`` a ``CropScheduleSampler`` yields (which wins).  The
    store is opened lazily in each process that reads (DataLoader workers
    reopen it after fork or spawn); the dataset pickles without it.
    """

    def __init__(
        self,
        root: str | Path,
        store: str | Path | LabelStore,
        crops_per_visit: int = 4,
        input_size: int = 224,
        seed: int = 0,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        skip_failed: bool = False,
        device_decode: bool = False,
        *,
        check_sizes: bool = True,
        with_labels: bool = True,
        resampling: str | None = None,
        store_cache: str | Path | None = None,
        source: ImageSource | None = None,
        uint8_crops: bool = False,
    ) -> None:
        if device_decode and uint8_crops:
            raise ValueError(
                "uint8_crops=True applies to crops cut in the worker; with device_decode=True "
                "decode_on_device cuts them on the device (as float32)"
            )
        super().__init__(input_size, resampling, transform, uint8_crops=uint8_crops)
        # A remote store (URL) with ``store_cache`` keeps its chunks in that local folder.
        self.store_cache = None if store_cache is None else str(store_cache)
        handle = (
            store if isinstance(store, LabelStore) else LabelStore.open(store, cache=store_cache)
        )
        self.location = handle.location
        self.spec: StoreSpec = handle.spec
        self.crops_per_visit = int(crops_per_visit)
        self.seed = int(seed)
        self.device_decode = bool(device_decode)
        self.with_labels = bool(with_labels)
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if device_decode and transform is not None:
            raise ValueError("with device_decode=True pass transform to decode_on_device instead")
        check_crops_per_visit(self.location, self.spec, self.crops_per_visit)
        check_complete(handle)
        # A scan of ``root`` the caller already made (e.g. for a second dataset) is reused.
        source = scan_source(root) if source is None else source
        match_manifest(handle, source.manifest, check_sizes, root)
        usable = usable_images(handle, skip_failed)
        self.root = str(source.root)
        self.indices: NDArray[np.int64] = usable
        # Relative paths as one byte array plus offsets, not a list of str: workers read
        # them without touching reference counts, so forked memory stays shared.
        self.path_data, self.path_offsets = select_paths(handle.manifest, usable)
        self.targets: NDArray[np.int64] = handle.manifest.targets.astype(np.int64)[usable]
        # What the workers would otherwise each read again: markers and per-image sizes.
        self._reader_cache = handle.reader_cache(READ_PER_IMAGE)
        self._store: LabelStore | None = handle
        self._store_pid: int | None = os.getpid()

    # The store, per process ------------------------------------------------------------

    @property
    def store(self) -> LabelStore:
        """The label store, opened (again) on first use in this process."""
        if self._store is None or self._store_pid != os.getpid():
            self._store = LabelStore.open(self.location, cache=self.store_cache)
            self._store.adopt(self._reader_cache)
            self._store_pid = os.getpid()
        return self._store

    @property
    def codec(self) -> CodecSpec:
        """The store's label codec, for ``fkd.label_codecs_torch.decode_torch``."""
        return self.spec.codec

    @property
    def crops_per_image(self) -> int:
        return self.spec.crops_per_image

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_store"] = None
        state["_store_pid"] = None
        return state

    # Indexing ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.indices)

    def path_of(self, position: int) -> str:
        """The image file of ``dataset[position]``."""
        start, stop = self.path_offsets[position], self.path_offsets[position + 1]
        return os.path.join(self.root, self.path_data[start:stop].tobytes().decode("utf-8"))

    def schedule(self, position: int, visit: int | None = None) -> NDArray[np.int64]:
        """The stored crops that ``dataset[position]`` uses at ``visit`` (default: the epoch)."""
        image = int(self.indices[position])
        visit = self.epoch if visit is None else visit
        return crop_schedule(self.seed, image, visit, self.crops_per_image, self.crops_per_visit)

    def __getitem__(self, i: int) -> dict[str, Any]:
        """Item ``i`` (see the class docstring); its store data come from one ``read_crops``."""
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Items for a batch of indices, their store data read in one call per kind.

        DataLoader calls this (instead of ``__getitem__`` per index) when it batches, so a
        batch of B images costs one store read rather than B: zarr's per-call cost is
        most of the label read.  Only the N scheduled crops of each image are read
        (``LabelStore.read_crops``; O(N) bytes per image in a format v3 store, whatever M).
        """
        positions = [int(i) for i in indices]
        for position in positions:
            if not 0 <= position < len(self):
                raise IndexError(f"index {position} out of range for {len(self)} images")
        visits = [self.visit_of(i) for i in indices]
        images = self.indices[np.asarray(positions, dtype=np.int64)]
        chosen = np.stack(
            [self.schedule(p, v) for p, v in zip(positions, visits, strict=True)]
        ).reshape(len(positions), -1)
        boxes, flips, labels = self._read(images, chosen)
        return [
            self._item(
                position,
                chosen[row],
                boxes[row],
                flips[row],
                {name: values[row] for name, values in labels.items()},
            )
            for row, position in enumerate(positions)
        ]

    def _item(
        self,
        position: int,
        chosen: NDArray[np.int64],
        boxes: NDArray[np.float64],
        flips: NDArray[np.bool_],
        labels: dict[str, NDArray[Any]],
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "labels": labels,
            "target": int(self.targets[position]),
            "image_index": int(self.indices[position]),
            "crops": torch.from_numpy(chosen),
        }
        path = self.path_of(position)
        data = read_file(path)
        if self.device_decode:
            item.update(for_device(data, path))
            item["boxes"] = torch.from_numpy(boxes)
            item["flips"] = torch.from_numpy(flips)
            return item
        item["images"] = self.cut(decode_or_raise(data, path), boxes, flips)
        return item

    def _read(
        self, images: NDArray[np.int64], crops: NDArray[np.int64]
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_], dict[str, NDArray[Any]]]:
        """Fraction boxes ``[n, k, 4]``, flips and stored labels of crops ``[n, k]``."""
        store = self.store
        boxes, flips = store.read_boxes(images, crops)
        labels = store.read_crops(images, crops) if self.with_labels else {}
        return boxes, flips, labels
