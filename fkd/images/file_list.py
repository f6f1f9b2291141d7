"""Scanning a text/CSV file list: its entries, their targets and their files' sizes."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

from fkd.images.file_list_parsing import ListedImage, parse_file_list
from fkd.images.image_source import (
    FoundImage,
    ImageSource,
    ImageSourceError,
    build_source,
    few_names,
    is_image_name,
    source_root,
)
from fkd.storage_formats.manifest import NO_TARGET

INT32_MAX = 2**31 - 1


def scan_file_list(
    list_file: Path, hash_files: bool = False, root: Path | None = None
) -> ImageSource:
    """An ``ImageSource`` for a text/CSV file list, paths relative to ``root`` (default:
    the list's folder)."""
    if is_image_name(list_file.name):
        raise ImageSourceError(
            f"DATA {list_file} is an image, not a folder or a file list; pass its folder"
        )
    base = source_root(list_file) if root is None else root
    if not base.is_dir():
        raise ImageSourceError(f"root {base} is not a folder; pass the folder the list is under")
    listed = parse_file_list(read_list_text(list_file), list_file)
    refuse_duplicates(list_file, listed)
    targets, class_names = labels_to_targets(list_file, listed)
    sizes = listed_file_sizes(list_file, base, listed)
    found = [
        FoundImage(item.path, size, target)
        for item, size, target in zip(listed, sizes, targets, strict=True)
    ]
    return build_source(base, found, class_names, hash_files)


def read_list_text(list_file: Path) -> str:
    """The list's text (UTF-8, BOM allowed), or an error naming the file."""
    try:
        return list_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ImageSourceError(
            f"file list {list_file} is not UTF-8 text; pass an image folder or a UTF-8 "
            "list of relative paths"
        ) from None
    except OSError as error:
        raise ImageSourceError(
            f"cannot read file list {list_file}: {error.strerror or error}; check its permissions"
        ) from error


def refuse_duplicates(where: Path, listed: Sequence[ListedImage]) -> None:
    """A path listed twice is an error naming both lines."""
    first_line: dict[str, int] = {}
    for item in listed:
        if item.path in first_line:
            raise ImageSourceError(
                f"file list {where} names {item.path!r} twice (lines {first_line[item.path]} "
                f"and {item.line}); remove the duplicate"
            )
        first_line[item.path] = item.line


def labels_to_targets(
    where: Path, listed: Sequence[ListedImage]
) -> tuple[list[int], tuple[str, ...] | None]:
    """Targets and class names from the label column.

    No labels: targets -1.  All labels integers: those (-1 allowed for
    "unknown").  Otherwise every label is a class name and the targets index
    the sorted unique names.
    """
    labels = [item.label for item in listed]
    if all(label is None for label in labels):
        return [NO_TARGET] * len(listed), None
    unlabelled = next((item for item in listed if item.label is None), None)
    if unlabelled is not None:
        raise ImageSourceError(
            f"file list {where} line {unlabelled.line} has no label but other lines do; "
            "label every line or none"
        )
    names = [str(label) for label in labels]
    if all(re.fullmatch(r"[+-]?\d+", name) for name in names):
        return [integer_label(where, item) for item in listed], None
    class_names = tuple(sorted(set(names)))
    index = {name: i for i, name in enumerate(class_names)}
    return [index[name] for name in names], class_names


def integer_label(where: Path, item: ListedImage) -> int:
    """An integer label in [-1, 2**31 - 1], or an error naming its line."""
    value = int(str(item.label))
    if not NO_TARGET <= value <= INT32_MAX:
        raise ImageSourceError(
            f"file list {where} line {item.line}: label {value} is out of range; use a class "
            f"index in [0, {INT32_MAX}] or -1 for unknown"
        )
    return value


def listed_file_sizes(where: Path, base: Path, listed: Sequence[ListedImage]) -> list[int]:
    """Sizes of the listed files; missing or non-regular files are one error naming a few."""
    sizes: list[int] = []
    missing: list[str] = []
    for item in listed:
        try:
            info = os.stat(base / item.path)
        except OSError:
            missing.append(item.path)
            continue
        if not stat.S_ISREG(info.st_mode):
            missing.append(item.path)
            continue
        sizes.append(info.st_size)
    if missing:
        raise ImageSourceError(
            f"file list {where} names {len(missing)} file(s) missing under {base}: "
            f"{few_names(missing)}; fix the list or pass the root folder they are under"
        )
    return sizes
