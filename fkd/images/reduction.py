"""Reduced-size JPEG decoding: how far a visit's crops let an image shrink while decoding.

libjpeg decodes a JPEG at 1/2, 1/4 or 1/8 of its size (DCT scaling) for a fraction
of the full decode's cost; the reduced image is ``ceil(height / f) x ceil(width / f)``
(PIL's ``Image.draft`` and simplejpeg's ``min_height`` / ``min_width`` both give it).
Crop boxes are fractions of the image, so they replay on the reduced image unchanged
(``fkd.crops.cut`` turns them into pixels of the image actually decoded).

``largest_reduction`` is the rule: the largest factor at which every box of the visit
still spans at least ``margin x size`` pixels in height and width of the reduced image:
``margin = 1`` means no crop gets less than its output resolution; ``REDUCTION_MARGIN``
is the margin that keeps the crops within the bound ``docs/format.md`` §2.4 promises
(measured in ``tests/test_reduced_decode.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

REDUCTIONS = (8, 4, 2, 1)
"""The DCT scaling factors tried, largest first (1 is the full decode)."""

REDUCTION_MARGIN = 2.0
"""Default: every box keeps at least twice the output size in the reduced image."""

Reduction = Callable[[int, int], int]
"""Given an image's upright ``(height, width)``, the factor to decode it at."""


def largest_reduction(
    fractions: NDArray[np.float64],
    height: int,
    width: int,
    size: int,
    margin: float = REDUCTION_MARGIN,
) -> int:
    """The largest factor of ``REDUCTIONS`` that keeps every box ``>= margin * size`` pixels.

    ``fractions`` are boxes ``[N, 4]`` (top, left, height, width) as fractions of the
    upright image, ``height`` and ``width`` its full size, ``size`` the crops' output
    size.  Each box's height and width are measured in the reduced image
    (``ceil(height / f)``, ``ceil(width / f)``), the one the crops are cut from.
    """
    if int(size) < 1:
        raise ValueError(f"size must be positive, got {size}")
    if not margin >= 1.0:
        raise ValueError(f"margin must be >= 1 (no crop upsampled by the reduction), got {margin}")
    boxes = np.asarray(fractions, dtype=np.float64).reshape(-1, 4)
    if boxes.size == 0:
        return 1
    smallest_height = float(boxes[:, 2].min())
    smallest_width = float(boxes[:, 3].min())
    need = margin * int(size)
    for factor in REDUCTIONS:
        reduced_height, reduced_width = reduced_shape(int(height), int(width), factor)
        if smallest_height * reduced_height >= need and smallest_width * reduced_width >= need:
            return factor
    return 1


def reduction_for(fractions: NDArray[np.float64], size: int, margin: float) -> Reduction:
    """``largest_reduction`` for these boxes, as the ``Reduction`` a decoder asks."""
    return lambda height, width: largest_reduction(fractions, height, width, size, margin)


def reduced_shape(height: int, width: int, factor: int) -> tuple[int, int]:
    """The size libjpeg decodes a ``height x width`` JPEG to at ``1 / factor``."""
    return -(-height // factor), -(-width // factor)
