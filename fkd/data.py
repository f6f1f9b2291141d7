"""The student's loader: stored crops and their teacher labels, with no teacher.

A label store holds, per image, M crop boxes (as fractions of the image) and
the teacher's labels of those crops.  Training replays them: each time an
image is visited (once per epoch), ``N = crops_per_visit`` of its M crops are
cut from one decode of the image, and the batch carries their stored labels.

Pieces:

- ``crop_schedule(seed, image, visit, M, N)`` (``fkd.crops.schedule``): which
  stored crops visit ``visit`` of ``image`` uses, a pure function every rank and
  worker agrees on.
- ``CropLabelDataset``: checks on open that the store and the image folder
  agree, then ``dataset[i]`` decodes image ``i`` once, cuts its scheduled
  crops (``fkd.crops.datasets.CropDataset.cut``, the cutter every student shares)
  and returns them with their stored labels.  A DataLoader batch is
  read from the store in one ``read_images`` call (``__getitems__``).
- ``CropScheduleSampler``: ``DistributedSampler`` semantics (disjoint images
  per rank, order keyed by ``(seed, epoch)``).  It yields ``ScheduledIndex``
  values, ints that also carry the epoch to the dataset, so the visit reaches
  persistent worker processes with no shared state.
- ``collate_crops``: B images x N crops to one flat batch of B*N crops.
- ``make_loader`` / ``set_epoch``: the usual assembly.

Pixel values are float32 in [0, 255], **not normalised**: normalising (e.g.
``fkd.crops.normalise(x, mean, std)``) is the model's or the training loop's
job, on the device.  Labels come as the store keeps them (compact top-K
indices and quantised values); turn them into dense distributions on the
training device with ``fkd.labels.decode_torch(batch["labels"],
dataset.codec, device)``.

Typical use::

    loader, dataset, sampler = make_loader("data/train", "labels.zarr", batch_images=64,
                                           crops_per_visit=4, rank=rank, world_size=world)
    for epoch in range(epochs):
        set_epoch((loader, dataset, sampler), epoch)
        for batch in loader:
            x = normalise(batch["images"].to(device), mean, std)
            soft = decode_torch(batch["labels"], dataset.codec, device)
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader, Dataset, Sampler

from fkd import crops as crop_ops
from fkd.crops.datasets import CropDataset
from fkd.crops.schedule import ScheduledIndex, crop_schedule
from fkd.exceptions import UserInputError
from fkd.images import (
    JPEG_MAGIC,
    SIMPLEJPEG,
    SIMPLEJPEG_COLORSPACES,
    ImageDecodeError,
    ImageSource,
    decode_image_bytes,
    jpeg_exif_orientation,
    scan_source,
)
from fkd.storage_formats import CodecSpec, LabelStore, Manifest, StoreSpec
from fkd.storage_formats.layout import STATUS_FAILED
from fkd.worker_lifetime import DataLoaderWorkerLifetime

SHOWN = 3  # offenders named in a refusal
# Per-image arrays a reader needs: read once by the dataset, handed to its workers.
READ_PER_IMAGE = ("image_status", "image_height", "image_width")


class StoreMismatchError(UserInputError):
    """The label store cannot be used with these images or settings; the message says why."""


# The dataset -------------------------------------------------------------------------


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
    ) -> None:
        super().__init__(input_size, resampling, transform)
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
        """The store's label codec, for ``fkd.labels.decode_torch``."""
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
        """Item ``i`` (see the class docstring); its store data come from one ``read_images``."""
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Items for a batch of indices, their store data read in one ``read_images`` call.

        DataLoader calls this (instead of ``__getitem__`` per index) when it batches, so a
        batch of B images costs one store read rather than B: zarr's per-call cost is
        most of the label read.
        """
        positions = [int(i) for i in indices]
        for position in positions:
            if not 0 <= position < len(self):
                raise IndexError(f"index {position} out of range for {len(self)} images")
        visits = [self.visit_of(i) for i in indices]
        images = self.indices[np.asarray(positions, dtype=np.int64)]
        unique, row_of = np.unique(images, return_inverse=True)
        boxes, flips, labels = self._read(unique)
        items = []
        for position, visit, row in zip(positions, visits, row_of.tolist(), strict=True):
            chosen = self.schedule(position, visit)
            crop_labels = {name: values[row, chosen] for name, values in labels.items()}
            items.append(
                self._item(position, chosen, boxes[row, chosen], flips[row, chosen], crop_labels)
            )
        return items

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
        self, images: NDArray[np.int64]
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_], dict[str, NDArray[Any]]]:
        """Fraction boxes ``[n, M, 4]``, flips and stored labels of the given store images."""
        store = self.store
        if not self.with_labels:
            boxes, flips = store.read_boxes(images)
            return boxes, flips, {}
        batch = store.read_images(images)
        return batch.boxes, batch.flips, batch.labels


# Opening checks ------------------------------------------------------------------------


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


# Reading -------------------------------------------------------------------------------


def read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise FileNotFoundError(f"{path}: cannot read ({exc.strerror})") from exc


def decode_or_raise(data: bytes, path: str) -> NDArray[np.uint8]:
    try:
        return decode_image_bytes(data)
    except ImageDecodeError as exc:
        raise ValueError(
            f"{path}: cannot decode ({exc.reason}) although the store recorded it as ok: the "
            "file changed since the store was made"
        ) from None


def for_device(data: bytes, path: str) -> dict[str, torch.Tensor | None]:
    """A plain JPEG's bytes for decoding on the device, else its pixels decoded here."""
    if SIMPLEJPEG is not None and data.startswith(JPEG_MAGIC):
        try:
            colorspace = SIMPLEJPEG.decode_jpeg_header(data)[2]
        except Exception:
            colorspace = None
        if colorspace in SIMPLEJPEG_COLORSPACES and jpeg_exif_orientation(data) == 1:
            encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            return {"encoded": encoded, "pixels": None}
    return {"encoded": None, "pixels": torch.from_numpy(decode_or_raise(data, path))}


# Collating ------------------------------------------------------------------------------


def labels_to_torch(values: NDArray[Any]) -> torch.Tensor:
    """A stored label array as a tensor: same dtype, but uint16/32/64 become int64."""
    array = np.ascontiguousarray(values)
    if array.dtype.kind == "u" and array.dtype.itemsize > 1:
        array = array.astype(np.int64)
    return torch.from_numpy(array)


def collate_crops(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """B items of N crops each to one batch of B*N crops (crop-major within an image).

    ``images [B*N, 3, S, S]``, ``labels {field: tensor [B*N, ...]}``, ``targets``,
    ``image_index`` and ``crops`` (all int64 ``[B*N]``).  Items made with
    ``device_decode=True`` keep ``encoded`` / ``pixels`` as lists (one per image)
    and give ``boxes [B, N, 4]`` and ``flips [B, N]``, for ``decode_on_device``.
    """
    if not batch:
        raise ValueError("collate_crops needs at least one item")
    counts = [len(item["crops"]) for item in batch]
    out: dict[str, Any] = {
        "labels": {
            name: labels_to_torch(np.concatenate([item["labels"][name] for item in batch]))
            for name in batch[0]["labels"]
        },
        "targets": torch.tensor(
            [item["target"] for item, n in zip(batch, counts, strict=True) for _ in range(n)],
            dtype=torch.int64,
        ),
        "image_index": torch.tensor(
            [item["image_index"] for item, n in zip(batch, counts, strict=True) for _ in range(n)],
            dtype=torch.int64,
        ),
        "crops": torch.cat([torch.as_tensor(item["crops"]) for item in batch]),
    }
    if "images" in batch[0]:
        out["images"] = concatenate([item["images"] for item in batch])
    else:
        out["encoded"] = [item["encoded"] for item in batch]
        out["pixels"] = [item["pixels"] for item in batch]
        out["boxes"] = torch.stack([item["boxes"] for item in batch])
        out["flips"] = torch.stack([item["flips"] for item in batch])
    return out


def concatenate(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat``; in a DataLoader worker, straight into shared memory (one copy, not two)."""
    if torch.utils.data.get_worker_info() is None:
        return torch.cat(tensors)
    first = tensors[0]
    total = sum(t.shape[0] for t in tensors)
    storage = first._typed_storage()._new_shared(total * first[0].numel(), device=first.device)
    out = first.new(storage).resize_(total, *first.shape[1:])
    return torch.cat(tensors, out=out)


def decode_on_device(
    batch: dict[str, Any],
    input_size: int,
    device: torch.device | str,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    resampling: str | None = None,
) -> dict[str, Any]:
    """Decode (JPEGs with nvjpeg on CUDA) and cut a ``device_decode`` batch on ``device``.

    Adds ``images [B*N, 3, S, S]`` (float32, 0..255) on ``device`` to ``batch``
    and returns it; ``transform`` is applied per crop as in the dataset.  Crops go
    through ``fkd.crops.cut`` with ``resampling`` (default: ``resampling_for(device)``,
    ``"roi-align-bilinear"`` on an accelerator).
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    device = torch.device(device)
    chosen = (
        crop_ops.resampling_for(device)
        if resampling is None
        else crop_ops.get_resampling(resampling)
    )
    encoded = [e for e in batch["encoded"] if e is not None]
    with warnings.catch_warnings():  # torchvision >= 0.29 points to torchcodec; it still works
        warnings.simplefilter("ignore", DeprecationWarning)
        images = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device) if encoded else []
    decoded = iter(images)
    parts = []
    for row, (data, pixels) in enumerate(zip(batch["encoded"], batch["pixels"], strict=True)):
        if data is not None:
            image = next(decoded)
        else:
            image = pixels.to(device, non_blocking=True).permute(2, 0, 1)
        boxes, flips = batch["boxes"][row].double().numpy(), batch["flips"][row].numpy()
        crops = crop_ops.cut(image, boxes, flips, input_size, chosen, device)
        if transform is not None:
            crops = torch.stack([transform(crop) for crop in crops])
        parts.append(crops)
    batch["images"] = torch.cat(parts)
    return batch


# The sampler -----------------------------------------------------------------------------


class CropScheduleSampler(Sampler[int]):
    """``DistributedSampler`` over a dataset's images, yielding ``ScheduledIndex`` values.

    Same semantics and, with ``shuffle``, the same order as
    ``torch.utils.data.DistributedSampler``: a ``torch.randperm`` seeded with
    ``seed + epoch``; without ``drop_last`` the list is padded by repeating its
    head so every rank gets ``ceil(n / num_replicas)`` images, with it the tail
    is dropped; rank r takes every ``num_replicas``-th image from r.  Each index
    carries the epoch as its visit.
    """

    def __init__(
        self,
        dataset: Any,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if num_replicas is None or rank is None:
            default_replicas, default_rank = _distributed_defaults()
            num_replicas = default_replicas if num_replicas is None else num_replicas
            rank = default_rank if rank is None else rank
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must lie in [0, num_replicas={num_replicas}), got {rank}")
        self.size = len(dataset)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.epoch = 0
        if drop_last and self.size % self.num_replicas:
            self.num_samples = self.size // self.num_replicas
        else:
            self.num_samples = math.ceil(self.size / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def order(self) -> list[int]:
        """This rank's dataset indices for the current epoch, as plain ints."""
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            indices: list[int] = torch.randperm(self.size, generator=generator).tolist()
        else:
            indices = list(range(self.size))
        if not self.drop_last:
            padding = self.total_size - len(indices)
            if padding <= len(indices):
                indices += indices[:padding]
            else:
                indices += (indices * math.ceil(padding / len(indices)))[:padding]
        else:
            indices = indices[: self.total_size]
        return indices[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        """The epoch's indices, made one at a time as the loader asks (not a list of N
        objects at every epoch start: seconds and a gigabyte at ImageNet-21K)."""
        epoch = self.epoch
        return (ScheduledIndex(i, epoch) for i in self.order())

    def __len__(self) -> int:
        return self.num_samples


def _distributed_defaults() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


# Assembly -----------------------------------------------------------------------------------

LoaderParts = tuple[DataLoader[Any], CropLabelDataset, CropScheduleSampler]


def make_loader(
    root: str | Path,
    store: str | Path | LabelStore,
    batch_images: int,
    crops_per_visit: int = 4,
    input_size: int = 224,
    seed: int = 0,
    workers: int = 2,
    rank: int = 0,
    world_size: int = 1,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    skip_failed: bool = False,
    *,
    shuffle: bool = True,
    drop_last: bool = False,
    device_decode: bool = False,
    check_sizes: bool = True,
    with_labels: bool = True,
    resampling: str | None = None,
    pin_memory: bool = False,
    prefetch_factor: int | None = None,
    store_cache: str | Path | None = None,
    source: ImageSource | None = None,
) -> LoaderParts:
    """A DataLoader of ``batch_images * crops_per_visit`` crops per batch, its dataset and sampler.

    Call ``set_epoch(parts, epoch)`` before each epoch: it sets the sampler's
    order and the dataset's visit.  Workers are persistent (when ``workers > 0``);
    the visit reaches them inside each index (``ScheduledIndex``), so nothing
    has to be shared with them.  ``drop_last`` applies both to the distributed
    split and to the last, incomplete batch.
    """
    dataset = CropLabelDataset(
        root,
        store,
        crops_per_visit=crops_per_visit,
        input_size=input_size,
        seed=seed,
        transform=transform,
        skip_failed=skip_failed,
        device_decode=device_decode,
        check_sizes=check_sizes,
        with_labels=with_labels,
        resampling=resampling,
        store_cache=store_cache,
        source=source,
    )
    sampler = CropScheduleSampler(
        dataset,
        num_replicas=world_size,
        rank=rank,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
    )
    extra: dict[str, Any] = {}
    if workers > 0:
        extra["persistent_workers"] = True
        if prefetch_factor is not None:
            extra["prefetch_factor"] = prefetch_factor
    loader: DataLoader[Any] = DataLoader(
        dataset,
        batch_size=batch_images,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_crops,
        pin_memory=pin_memory,
        drop_last=drop_last,
        worker_init_fn=DataLoaderWorkerLifetime(),
        **extra,
    )
    return loader, dataset, sampler


def set_epoch(loader_parts: Iterable[Any], epoch: int) -> None:
    """Set ``epoch`` on every part that has ``set_epoch`` (the dataset and the sampler)."""
    for part in loader_parts:
        if hasattr(part, "set_epoch"):
            part.set_epoch(epoch)


__all__ = [
    "CropLabelDataset",
    "CropScheduleSampler",
    "LoaderParts",
    "ScheduledIndex",
    "StoreMismatchError",
    "collate_crops",
    "crop_schedule",
    "decode_on_device",
    "make_loader",
    "set_epoch",
]
