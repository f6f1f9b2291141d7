"""Chosen crops of chosen images: checking crop numbers and selecting them from rows or
through zarr (``StoreReader.read_crops``, ``read_boxes(images, crops)``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


def crop_numbers(crops: Any, images: int, crops_per_image: int) -> NDArray[np.int64]:
    """``crops`` as ``[images, k]`` int64, each in ``[0, M)`` (``IndexError`` otherwise)."""
    chosen = np.asarray(crops)
    if chosen.dtype.kind not in "iu":
        raise TypeError(f"crop numbers must be integers, got {chosen.dtype}")
    chosen = chosen.astype(np.int64).reshape(images, -1)
    if chosen.size and (chosen.min() < 0 or chosen.max() >= crops_per_image):
        raise IndexError(f"crop number out of range [0, {crops_per_image})")
    return chosen


def point_coordinates(
    index: NDArray[np.int64], crops: NDArray[np.int64], trailing: tuple[int, ...]
) -> tuple[NDArray[np.int64], ...]:
    """zarr coordinates (one array per axis) of every element of the points
    ``(index[p], crops[p], ...)``, the trailing axes whole."""
    if not trailing:
        return index, crops
    inner = np.indices(trailing).reshape(len(trailing), -1)  # [axes, T]
    count = inner.shape[1]
    return (
        np.repeat(index, count),
        np.repeat(crops, count),
        *(np.tile(axis, index.size) for axis in inner),
    )


def take_crops(rows: NDArray[Any], chosen: NDArray[np.int64]) -> NDArray[Any]:
    """``rows[i, chosen[i]]`` for each image ``i``: ``[n, M, ...]`` to ``[n, k, ...]``."""
    where = chosen.reshape(*chosen.shape, *([1] * (rows.ndim - 2)))
    return np.take_along_axis(rows, where, axis=1)
