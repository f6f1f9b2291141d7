"""The crop schedule: which of an image's M stored crops each visit uses.

``crop_schedule(seed, image, visit, M, N)``: visits walk a permutation of the M crops keyed
by ``(seed, image, cycle)``, so within one cycle every crop is used once before any
repeats.  It is a pure function: every rank and worker agrees without talking.
``ScheduledIndex`` carries the visit with a dataset index into loader workers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


def crop_schedule(
    seed: int, image: int, visit: int, crops_per_image: int, crops_per_visit: int
) -> NDArray[np.int64]:
    """The stored crops (indices into M) used at visit ``visit`` of image ``image``.

    Visit v takes positions ``v*N .. v*N + N - 1`` of an endless sequence made
    of permutations of the M crops, one permutation per cycle ``c = position // M``,
    each drawn from ``np.random.default_rng(SeedSequence([seed, image, c]))``.
    So every crop is used exactly once per cycle; when M % N != 0 a visit that
    straddles two cycles takes the tail of one permutation and the head of the next.
    """
    m, n = int(crops_per_image), int(crops_per_visit)
    if not 1 <= n <= m:
        raise ValueError(f"crops_per_visit must lie in [1, crops_per_image={m}], got {n}")
    if seed < 0 or image < 0 or visit < 0:
        raise ValueError(f"seed, image and visit must be >= 0, got {seed}, {image}, {visit}")
    start = visit * n
    first = start // m
    out = np.empty(n, dtype=np.int64)
    filled = 0
    for cycle in range(first, (start + n - 1) // m + 1):
        perm = _cycle_permutation(seed, image, cycle, m)
        lo = max(start - cycle * m, 0)
        hi = min(start + n - cycle * m, m)
        out[filled : filled + hi - lo] = perm[lo:hi]
        filled += hi - lo
    return out


def _cycle_permutation(seed: int, image: int, cycle: int, m: int) -> NDArray[np.int64]:
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(image), int(cycle)]))
    return rng.permutation(m).astype(np.int64)


class ScheduledIndex(int):
    """A dataset index that also carries the visit (epoch) it is drawn for.

    ``CropScheduleSampler`` yields these, so the epoch travels with each index
    into persistent DataLoader workers; it is an ``int`` everywhere else.
    """

    visit: int

    def __new__(cls, index: int, visit: int) -> ScheduledIndex:
        value = super().__new__(cls, index)
        value.visit = int(visit)
        return value

    def __reduce__(self) -> tuple[Any, tuple[int, int]]:
        return ScheduledIndex, (int(self), self.visit)

    def __repr__(self) -> str:
        return f"ScheduledIndex({int(self)}, visit={self.visit})"
