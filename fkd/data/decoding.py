"""Where a loader item's image becomes pixels: in the worker, or on the training device.

- ``read_file`` / ``decode_or_raise``: the worker reads the file and decodes it (the
  default; a file the store recorded as ok that no longer decodes is refused).
- ``device_decode=True`` (``CropLabelDataset``): the worker only reads; ``for_device``
  keeps a plain JPEG's bytes (anything else is decoded in the worker), and
  ``decode_on_device`` decodes a collated batch on the device (nvjpeg on CUDA) and cuts
  its crops there through ``fkd.crops.cut``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from fkd import crops as crop_ops
from fkd.images import (
    JPEG_MAGIC,
    SIMPLEJPEG,
    SIMPLEJPEG_COLORSPACES,
    ImageDecodeError,
    decode_image_bytes,
    jpeg_exif_orientation,
)


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
