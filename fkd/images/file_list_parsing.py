"""Parsing the text of a file list into its entries (paths checked, labels as written)."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fkd.images.image_source import ImageSourceError, is_image_name
from fkd.storage_formats.manifest import check_relative_path

LABEL_HEADER_NAMES = frozenset({"label", "target", "class"})


@dataclass(frozen=True)
class ListedImage:
    """One entry of a file list, before its file is looked at."""

    path: str
    label: str | None
    line: int


def parse_file_list(text: str, where: Path | str = "file list") -> list[ListedImage]:
    """Entries of a file list.

    One image per line, an optional label after it.  Blank lines and lines
    starting with '#' are skipped, and so is a first line ``path`` or
    ``path,label`` (also ``target``/``class``).  The separator is chosen once
    per file: a tab if any line holds one, else a comma if any line holds one
    (CSV quoting allowed), else whitespace.  With whitespace, a line whose last
    word ends in an image extension is taken whole as the path, so unlabelled
    paths may hold spaces.  Paths are normalised (``./a//b.jpg`` is
    ``a/b.jpg``) and must stay below the root.
    """
    lines = [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#")
    ]
    split = choose_splitter([line for _, line in lines])
    rows = [(number, split(line)) for number, line in lines]
    if rows and is_header(rows[0][1]):
        rows = rows[1:]
    if not rows:
        raise ImageSourceError(f"file list {where} names no images; add one relative path per line")
    return [listed_image(where, number, fields) for number, fields in rows]


def choose_splitter(lines: Sequence[str]) -> Callable[[str], list[str]]:
    """The function that splits one line of this file into its fields."""
    if any("\t" in line for line in lines):
        return lambda line: [field.strip() for field in line.split("\t")]
    if any("," in line for line in lines):
        return lambda line: [field.strip() for field in next(csv.reader([line]))]
    return split_on_whitespace


def split_on_whitespace(line: str) -> list[str]:
    """``path label`` on the last run of whitespace, unless the last word is an image name."""
    fields = line.rsplit(None, 1)
    if len(fields) == 2 and is_image_name(fields[1]):
        return [line]
    return fields


def is_header(fields: Sequence[str]) -> bool:
    """Whether a first row is a ``path[,label]`` header."""
    if not fields or fields[0].lower() != "path":
        return False
    return len(fields) == 1 or (len(fields) == 2 and fields[1].lower() in LABEL_HEADER_NAMES)


def listed_image(where: Path | str, number: int, fields: Sequence[str]) -> ListedImage:
    """One checked entry from the fields of line ``number``."""
    if len(fields) > 2:
        raise ImageSourceError(
            f"file list {where} line {number} has {len(fields)} fields; expected a path "
            "and at most one label (quote paths holding commas)"
        )
    label = fields[1] if len(fields) == 2 and fields[1] else None
    return ListedImage(listed_path(where, number, fields[0]), label, number)


def listed_path(where: Path | str, number: int, raw: str) -> str:
    """A list entry's path, normalised, or an error saying how to write it."""
    at = f"file list {where} line {number}"
    if "\\" in raw:
        raise ImageSourceError(f"{at}: path {raw!r} holds a backslash; use forward slashes")
    pure = PurePosixPath(raw)
    if pure.is_absolute():
        raise ImageSourceError(
            f"{at}: path {raw!r} is absolute; list paths relative to the list's folder or root"
        )
    if ".." in pure.parts:
        raise ImageSourceError(
            f"{at}: path {raw!r} climbs out with '..'; list paths below the root "
            "(pass root= to start higher)"
        )
    try:
        return check_relative_path(str(pure))
    except ValueError as error:
        raise ImageSourceError(f"{at}: {error}; fix the line") from None
