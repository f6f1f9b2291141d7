"""Pictures of a store's crops: an image, a sample of its boxes, and their top-K labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from fkd.exceptions import UserInputError
from fkd.images import ImageDecodeError, decode_image, source_root
from fkd.storage_formats import LabelStore
from fkd.storage_formats.label_codecs import top_k


def resolve_image(store: LabelStore, image: str) -> int:
    """An image index from an integer or a manifest path."""
    if image.isdigit():
        index = int(image)
        if index >= store.spec.num_images:
            raise UserInputError(
                f"image {index} is out of range: the store has {store.spec.num_images} images"
            )
        return index
    try:
        return store.manifest.paths.index(image)
    except ValueError:
        raise UserInputError(
            f"{image!r} is not in the store's manifest (give an index or a "
            "relative path as listed by the store)"
        ) from None


def draw_crops(
    store: LabelStore, image: str, data: Path, out: Path, crops: int = 6, k: int = 3
) -> Path:
    """Write a PNG: the image with ``crops`` boxes, and each crop with its top-k labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    index = resolve_image(store, image)
    pixels = decode_shown(store, index, data)
    batch = store.read_images([index])
    height, width = pixels.shape[:2]
    boxes = batch.boxes[0, :crops] * np.array([height, width, height, width])
    dense = store.decode_labels({name: values[0, :crops] for name, values in batch.labels.items()})
    names = store.spec.teacher.class_names
    figure, axes = plt.subplots(
        1, crops + 1, figsize=(2.6 * (crops + 1), 3.4), layout="constrained"
    )
    axes[0].imshow(pixels)
    axes[0].set_title(store.manifest.paths[index], fontsize=8)
    for crop, (top, left, h, w) in enumerate(boxes):
        axes[0].add_patch(Rectangle((left, top), w, h, fill=False, color=f"C{crop}", lw=1.5))
        axes[crop + 1].imshow(cut(pixels, (top, left, h, w), bool(batch.flips[0, crop])))
        axes[crop + 1].set_title(label_text(dense[crop], names, k), fontsize=7, color=f"C{crop}")
    for axis in axes:
        axis.axis("off")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=80)
    plt.close(figure)
    return out


def decode_shown(store: LabelStore, index: int, data: Path) -> NDArray[np.uint8]:
    """Image ``index`` decoded from DATA as ``fkd generate`` read it (``DATA/train`` when
    that is a folder); a file that is missing or does not decode is a ``ValueError``."""
    relative = store.manifest.paths[index]
    path = source_root(data) / relative
    try:
        return decode_image(path)
    except ImageDecodeError as error:
        fix = (
            "pass the images the store was generated from as --data"
            if not path.exists()
            else "choose another image"
        )
        raise UserInputError(
            f"cannot draw image {index} ({relative}): {path}: {error.reason}; {fix}"
        ) from None


def cut(
    pixels: NDArray[np.uint8], box: tuple[float, float, float, float], flip: bool
) -> NDArray[np.uint8]:
    top, left, height, width = (round(float(v)) for v in box)
    crop = pixels[top : top + max(height, 1), left : left + max(width, 1)]
    return crop[:, ::-1] if flip else crop


def label_text(probs: NDArray[np.float32], names: tuple[str, ...] | None, k: int) -> str:
    index, values = top_k(probs[None], min(k, probs.shape[-1]))
    return "\n".join(
        f"{names[i] if names else i}: {v:.2f}" for i, v in zip(index[0], values[0], strict=True)
    )
