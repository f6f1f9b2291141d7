"""Synthetic teacher-like distributions, for benchmarks and tests.

Uniform noise compresses nothing like real labels.  A teacher's outputs over
the crops of one image share a few dominant classes with a long tail, and that
is what these mimic: per image, ``dominant`` classes drawn at random get a
logit boost of about ``boost``; every crop adds its own Gaussian noise to the
image's logits; a softmax at temperature 1 gives the crop's distribution.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def teacher_like_probs(
    rng: np.random.Generator,
    num_images: int,
    crops_per_image: int,
    num_classes: int,
    dominant: int = 3,
    boost: float = 7.0,
    crop_noise: float = 1.0,
) -> NDArray[np.float32]:
    """Probabilities ``[num_images, crops_per_image, num_classes]``, float32."""
    base = rng.normal(0.0, 1.5, size=(num_images, 1, num_classes))
    for image in range(num_images):
        classes = rng.choice(num_classes, size=min(dominant, num_classes), replace=False)
        base[image, 0, classes] += boost * rng.uniform(0.6, 1.0, size=len(classes))
    logits = base + rng.normal(0.0, crop_noise, size=(num_images, crops_per_image, num_classes))
    logits -= logits.max(axis=-1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=-1, keepdims=True)
    return probs.astype(np.float32)
