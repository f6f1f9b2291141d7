"""Real photos bundled with scikit-image, saved as a small ImageFolder for the tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

Photo = tuple[str, str, Callable[[], np.ndarray]]  # (class folder, file name, loader)


def save_photos(
    root: Path,
    photos: Sequence[Photo],
    scale: int = 1,
    quality: int = 95,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> Path:
    """Each photo under ``root/<folder>/<name>``, its sides divided by ``scale``."""
    for folder, name, load in photos:
        (root / folder).mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(load())
        if scale != 1:
            image = image.resize((image.width // scale, image.height // scale), resample)
        image.save(root / folder / name, quality=quality)
    return root
