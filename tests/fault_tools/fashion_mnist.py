"""Fashion-MNIST training images as PNG class folders (read from the Debian IDX files)."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from fkd.fashion_mnist import read_split

FASHION_MNIST = Path(os.environ.get("FKD_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
FASHION_CLASSES = (  # short folder names: the file-size-limit test sizes its limit on them
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "boot",
)  # fmt: skip


def fashion_mnist_folder(root: Path, count: int, offset: int = 0) -> Path:
    """``count`` Fashion-MNIST training images as PNGs in class folders under ``root``."""
    images, labels = read_split(FASHION_MNIST, "train")
    for i in range(offset, offset + count):
        folder = root / FASHION_CLASSES[int(labels[i])]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(folder / f"{i:05d}.png")
    return root
