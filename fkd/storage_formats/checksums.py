"""``SHA256SUMS``: the checksums of a published store's files (``sha256sum -c`` compatible).

``fkd publish`` writes it at the store's root; ``fkd verify`` checks it when present.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

SUMS = "SHA256SUMS"


def checksum_lines(root: Path) -> str:
    """The ``SHA256SUMS`` text: one ``<sha256>  <relative path>`` line per file below ``root``."""
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != SUMS):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(root).as_posix()}")
    return "\n".join(lines) + "\n"


def check_checksums(root: Path) -> list[str]:
    """Files whose sha256 differs from ``SHA256SUMS``, or that are missing (empty if none)."""
    sums = root / SUMS
    if not sums.is_file():
        return []
    problems = []
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        path = root / name
        if ".." in Path(name).parts or not path.is_file():
            problems.append(f"{name}: listed in {SUMS} but missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{name}: sha256 differs from {SUMS}")
    return problems
