"""What decoding refuses and how it says so: the pixel cap and the short failure reason."""

from __future__ import annotations

DEFAULT_MAX_PIXELS = 178_956_970
"""Largest width x height decoded: PIL's own decompression-bomb error threshold."""

MAX_REASON_BYTES = 120
"""Longest failure reason, in UTF-8 bytes (the store keeps 128)."""


class ImageDecodeError(Exception):
    """One image could not be decoded; ``reason`` is a short line for the label store."""

    def __init__(self, reason: str) -> None:
        self.reason = short_reason(reason)
        super().__init__(self.reason)


def check_max_pixels(max_pixels: int) -> None:
    """``max_pixels`` must be a positive integer."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")


def check_pixel_count(width: int, height: int, max_pixels: int) -> None:
    """Refuse an image over the cap, from its header size alone."""
    if width * height > max_pixels:
        raise ImageDecodeError(f"too large: {width}x{height} pixels > cap {max_pixels}")


def short_reason(text: str) -> str:
    """``text`` on one line, cut to ``MAX_REASON_BYTES`` UTF-8 bytes (ending '...' if cut)."""
    line = " ".join(text.split())
    raw = line.encode("utf-8")
    if len(raw) <= MAX_REASON_BYTES:
        return line
    return raw[: MAX_REASON_BYTES - 3].decode("utf-8", errors="ignore") + "..."
