"""A small progress line for long jobs: rate, ETA, quiet when stderr is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress:
    """``update(images, crops)`` redraws one line with images/s, crops/s and ETA."""

    def __init__(
        self,
        total_images: int,
        label: str = "",
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = total_images
        self.label = label
        self.images = 0
        self.crops = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0

    def update(self, images: int, crops: int) -> None:
        self.images += images
        self.crops += crops
        now = time.perf_counter()
        if self.enabled and (now - self._last_draw > 0.2 or self.images >= self.total):
            self._last_draw = now
            self.stream.write("\r" + self.line(now))
            self.stream.flush()

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.perf_counter()) - self.start, 1e-9)
        rate = self.images / elapsed
        eta = (self.total - self.images) / rate if rate > 0 else 0.0
        return (
            f"{self.label}{self.images}/{self.total} images  {rate:.1f} img/s  "
            f"{self.crops / elapsed:.0f} crops/s  elapsed {format_seconds(elapsed)}  "
            f"ETA {format_seconds(eta)}"
        )

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
