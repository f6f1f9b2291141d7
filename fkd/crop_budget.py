"""The crop budget of a student run: M from crop-epochs, and how often each crop is used.

A student run of E crop-epochs at N crops per visit makes V = ceil(E / N) visits of each
image and uses V x N crops of it (``fkd train --epochs E --crops-per-visit N``).  Its
crop schedule (``fkd.crops.schedule``) walks the M stored crops one cycle at a time,
every crop once per cycle, so each stored crop is used at most ceil(V x N / M) times, on
average V x N / M (the reuse factor), and every crop is fresh when M >= V x N: the
student then sees what online KD's student sees (Beyer et al. 2022).

``crops_for_epochs(E, N, R)`` is the M that ``fkd generate --for-epochs E
--crops-per-visit N --reuse R`` stores: N x ceil(V / R), the fewest crops, in whole
visits, for which no crop is used more than R times.  A multiple of N, so a cycle is a
whole number of visits and no visit straddles two cycles; at least N.  Torch-free.
"""

from __future__ import annotations

import math


def visits_for(epochs: int, crops_per_visit: int) -> int:
    """V: the visits of each image in a run of ``epochs`` crop-epochs, N crops a visit."""
    return math.ceil(epochs / crops_per_visit)


def crops_for_epochs(epochs: int, crops_per_visit: int, reuse: int = 1) -> int:
    """M = N x ceil(V / R): no stored crop used more than ``reuse`` times in the run."""
    return crops_per_visit * math.ceil(visits_for(epochs, crops_per_visit) / reuse)


def uses_per_crop(epochs: int, crops_per_visit: int, crops_per_image: int) -> float:
    """The reuse factor: how many times the run uses each of M stored crops, on average
    (V x N / M; the schedule makes every crop's count this, rounded down or up)."""
    return visits_for(epochs, crops_per_visit) * crops_per_visit / crops_per_image


def epochs_covered(crops_per_image: int, crops_per_visit: int, reuse: int = 1) -> int:
    """The most crop-epochs a run at N crops per visit can take from M stored crops with
    no crop used more than ``reuse`` times: N x floor(R x M / N) (0 when M < N)."""
    if crops_per_image < crops_per_visit:
        return 0
    return crops_per_visit * (reuse * crops_per_image // crops_per_visit)


__all__ = ["crops_for_epochs", "epochs_covered", "uses_per_crop", "visits_for"]
