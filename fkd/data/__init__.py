"""The student's loader: stored crops and their teacher labels, with no teacher.

A label store holds, per image, M crop boxes (as fractions of the image) and
the teacher's labels of those crops.  Training replays them: each time an
image is visited (once per epoch), ``N = crops_per_visit`` of its M crops are
cut from one decode of the image, and the batch carries their stored labels.

Where things are:

- ``dataset.py``: ``CropLabelDataset``; ``dataset[i]`` decodes image ``i`` once,
  cuts its scheduled crops (``fkd.crops.datasets.CropDataset.cut``, the cutter every
  student shares) and returns them with their stored labels.  A DataLoader batch
  is read from the store in one ``read_crops`` call (``__getitems__``).
- ``store_checks.py``: what opening refuses (store and folder disagree, uncommitted
  blocks, failed images, N > M): ``StoreMismatchError``.
- ``sampler.py``: ``CropScheduleSampler``, ``DistributedSampler`` semantics
  (disjoint images per rank, order keyed by ``(seed, epoch)``).  It yields
  ``ScheduledIndex`` values, ints that also carry the epoch to the dataset, so
  the visit reaches persistent worker processes with no shared state.
- ``fkd.crops.schedule.crop_schedule(seed, image, visit, M, N)``: which stored
  crops visit ``visit`` of ``image`` uses, a pure function every rank and worker
  agrees on (re-exported here).
- ``collate.py``: ``collate_crops``, B images x N crops to one flat batch of B*N crops.
- ``decoding.py``: decoding in the worker, or on the device (``device_decode=True``,
  then ``decode_on_device``; nvjpeg on CUDA).
- ``loader.py``: ``make_loader`` / ``set_epoch``, the usual assembly; ``crop_loader``, the
  same DataLoader over any crop dataset (``fkd train`` uses it without a store).

Pixel values are float32 in [0, 255], **not normalised**: normalising (e.g.
``fkd.crops.normalise(x, mean, std)``) is the model's or the training loop's
job, on the device.  ``uint8_crops=True`` hands them over as uint8 instead (the
same whole grey levels of the default ``"uint8-bilinear"`` cut, a quarter of the
bytes): ``batch["images"].to(device).float()`` gives exactly the float32 crops;
``fkd train`` does this on an accelerator.  Labels come as the store keeps them
(compact top-K indices and quantised values).  **Dense labels are rebuilt on the training
device** by ``fkd.label_codecs_torch.decode_torch(batch["labels"], dataset.codec, device)``;
``fkd train`` does it in ``fkd.train.targets``.

Typical use::

    loader, dataset, sampler = make_loader("data/train", "labels.zarr", batch_images=64,
                                           crops_per_visit=4, rank=rank, world_size=world)
    for epoch in range(epochs):
        set_epoch((loader, dataset, sampler), epoch)
        for batch in loader:
            x = normalise(batch["images"].to(device), mean, std)
            soft = decode_torch(batch["labels"], dataset.codec, device)
"""

from fkd.crops.schedule import ScheduledIndex, crop_schedule
from fkd.data.collate import collate_crops
from fkd.data.dataset import CropLabelDataset
from fkd.data.decoding import decode_on_device
from fkd.data.loader import LoaderParts, crop_loader, make_loader, set_epoch
from fkd.data.sampler import CropScheduleSampler
from fkd.data.store_checks import StoreMismatchError

__all__ = [
    "CropLabelDataset",
    "CropScheduleSampler",
    "LoaderParts",
    "ScheduledIndex",
    "StoreMismatchError",
    "collate_crops",
    "crop_loader",
    "crop_schedule",
    "decode_on_device",
    "make_loader",
    "set_epoch",
]
