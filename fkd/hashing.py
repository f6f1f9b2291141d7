"""Hex digests of whole files (``hashlib.file_digest``: chunked, never the whole file in memory)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

__all__ = ["file_hexdigest", "sha256_file"]


def file_hexdigest(path: str | os.PathLike[str], digest: str | Callable[[], Any]) -> str:
    """Hex digest of the file's bytes; ``digest`` is a hashlib name or constructor."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, digest).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the file's bytes."""
    return file_hexdigest(path, "sha256")
