"""Where labels are made on the device: ``BlockLabeller`` turns one block's decoded images
into its ``BlockData``: crops cut on the store's crop path, the teacher's softmax(T) in
batches (AMP and channels_last on GPU: ``teacher_probabilities``), encoded by the store's
codec on the device (``encode_on_device``).  Batches never cross a block, so a block's
bytes depend only on the block, the parameters and the hardware."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from fkd.devices import device_autocast
from fkd.generate.cutter import CropCutter, sample_image_boxes
from fkd.generate.errors import GenerateError
from fkd.label_codecs_torch import encode_torch, to_numpy_fields
from fkd.storage_formats import (
    STATUS_FAILED,
    STATUS_OK,
    BlockData,
    CodecSpec,
    ImageBatch,
    LabelStore,
    StoreSpec,
    get_codec,
)
from fkd.teachers import LoadedTeacher


def teacher_probabilities(
    teacher: LoadedTeacher, batch: torch.Tensor, temperature: float, device: torch.device
) -> torch.Tensor:
    """The teacher's softmax(T) of a batch of crops, in float32 (AMP and channels_last)."""
    with torch.inference_mode(), device_autocast(device):
        return teacher.probabilities(
            batch.contiguous(memory_format=torch.channels_last), temperature
        ).float()


def encode_on_device(probs: torch.Tensor, codec: CodecSpec) -> dict[str, NDArray[Any]]:
    """Encode probabilities with the store's codec where they are (top-K on the device),
    then bring the encoded fields to numpy."""
    return to_numpy_fields(encode_torch(probs, codec), codec)


@dataclass
class BlockLabeller:
    """Turns the decoded images of one block into its ``BlockData``."""

    spec: StoreSpec
    teacher: LoadedTeacher
    device: torch.device
    batch_size: int
    reference: LabelStore | None = None
    teacher_seconds: float = 0.0

    @property
    def cutter(self) -> CropCutter:
        return CropCutter.for_store(self.spec, self.device)

    def label(
        self,
        block: int,
        images: Iterable[tuple[int, NDArray[np.uint8] | None, str, torch.Tensor | None]],
        count: int,
        paths: Callable[[int], str],
    ) -> BlockData:
        """Label a block's ``count`` images as they arrive from the decode stream.

        Each item is (index, pixels or None, failure reason, crops cut by a decode
        worker or None).  The teacher runs as soon as ``batch_size`` crops are pending,
        so decoding the next images overlaps it; batches never cross the block.
        """
        m = self.spec.crops_per_image
        height = np.zeros(count, dtype=np.uint32)
        width = np.zeros(count, dtype=np.uint32)
        status = np.full(count, STATUS_FAILED, dtype=np.uint8)
        errors = [""] * count
        indices = np.zeros(count, dtype=np.int64)
        flips_all = np.zeros((count, m), dtype=bool)
        replayed = self.replayed(block)
        ok_rows: list[int] = []
        pending: list[torch.Tensor] = []
        encoded: list[dict[str, NDArray[Any]]] = []
        for row, (index, image, reason, crops) in enumerate(images):
            indices[row], errors[row] = index, reason
            if image is None:
                continue
            height[row], width[row] = image.shape[:2]
            status[row] = STATUS_OK
            ok_rows.append(row)
            boxes, flips = self.boxes(index, int(height[row]), int(width[row]), row, replayed)
            flips_all[row] = flips
            if crops is None or self.reference is not None:
                crops = self.cutter.cut_boxes(image, boxes, flips, self.device)
            pending.append(crops.to(self.device))
            while sum(len(p) for p in pending) >= self.batch_size:
                batch, pending = _take(pending, self.batch_size)
                encoded.append(self.run_teacher(batch, block, indices[ok_rows], paths))
        if pending:
            batch, _ = _take(pending, sum(len(p) for p in pending))
            encoded.append(self.run_teacher(batch, block, indices[ok_rows], paths))
        labels = self.encode(encoded, ok_rows, count, m)
        stored_boxes = stored_flips = None
        if replayed is not None:
            stored_boxes, stored_flips = replayed.boxes, flips_all
        return BlockData(height, width, status, errors, labels, stored_boxes, stored_flips)

    def replayed(self, block: int) -> ImageBatch | None:
        """The block's stored boxes and flips in ``--reference``, read once (stored sampler)."""
        if self.reference is None or not self.spec.crops.boxes_stored:
            return None
        return self.reference.read_images(np.arange(*self.spec.block_range(block)))

    def boxes(
        self, index: int, height: int, width: int, row: int, replayed: ImageBatch | None
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Pixel boxes ``[M, 4]`` and flips of one image: sampled, or replayed."""
        if replayed is not None:
            scale = np.array([height, width, height, width], dtype=np.float64)
            return replayed.boxes[row] * scale, replayed.flips[row]
        return sample_image_boxes(self.spec.crops, index, height, width)

    def run_teacher(
        self,
        batch: torch.Tensor,
        block: int,
        images: NDArray[np.int64],
        paths: Callable[[int], str],
    ) -> dict[str, NDArray[Any]]:
        """Teacher probabilities of one batch, checked finite, encoded on the device."""
        start = time.perf_counter()
        probs = teacher_probabilities(self.teacher, batch, self.spec.codec.temperature, self.device)
        if not bool(torch.isfinite(probs).all()):
            names = ", ".join(paths(int(index)) for index in images[-5:])
            raise GenerateError(
                f"block {block}: the teacher returned NaN or infinity (images include {names}); "
                "nothing of this block was committed: check the teacher and its weights"
            )
        encoded = encode_on_device(probs, self.spec.codec)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.teacher_seconds += time.perf_counter() - start
        return encoded

    def encode(
        self, parts: list[dict[str, NDArray[Any]]], ok_rows: list[int], count: int, m: int
    ) -> dict[str, NDArray[Any]]:
        """Place the ok images' encoded crops into ``[count, M, ...]`` arrays (0 elsewhere)."""
        labels: dict[str, NDArray[Any]] = {}
        for f in get_codec(self.spec.codec).fields():
            full = np.zeros((count, m, *f.shape), dtype=f.dtype)
            if ok_rows:
                stacked = np.concatenate([p[f.name] for p in parts], axis=0)
                full[np.asarray(ok_rows)] = stacked.reshape((len(ok_rows), m, *f.shape))
            labels[f.name] = full
        return labels


def _take(pending: list[torch.Tensor], count: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The first ``count`` crops of ``pending`` as one batch, and what is left."""
    joined = torch.cat(pending) if len(pending) > 1 else pending[0]
    rest = [joined[count:]] if len(joined) > count else []
    return joined[:count], rest


__all__ = ["BlockLabeller", "encode_on_device", "teacher_probabilities"]
