"""Collating: B items of N crops each into one flat batch of B*N crops."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray


def labels_to_torch(values: NDArray[Any]) -> torch.Tensor:
    """A stored label array as a tensor: same dtype, but uint16/32/64 become int64."""
    array = np.ascontiguousarray(values)
    if array.dtype.kind == "u" and array.dtype.itemsize > 1:
        array = array.astype(np.int64)
    return torch.from_numpy(array)


def collate_crops(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """B items of N crops each to one batch of B*N crops (crop-major within an image).

    ``images [B*N, 3, S, S]`` (float32, or uint8 from ``uint8_crops`` datasets),
    ``labels {field: tensor [B*N, ...]}``, ``targets``, ``image_index`` and ``crops``
    (all int64 ``[B*N]``).  Items made with
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
