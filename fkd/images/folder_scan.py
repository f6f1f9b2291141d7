"""Scanning a folder: an ImageFolder tree of class folders, or a flat folder of images."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from fkd.images.image_source import (
    SHOWN_NAMES,
    FoundImage,
    ImageSource,
    ImageSourceError,
    build_source,
    extensions_text,
    image_folder_root,
    is_image_name,
)
from fkd.storage_formats.manifest import NO_TARGET, check_relative_path


def scan_image_folder(data: Path, hash_files: bool = False) -> ImageSource:
    """An ``ImageSource`` for an ImageFolder tree or a flat folder of images."""
    folder = image_folder_root(data)
    entries = visible_entries(folder)
    top_images = [entry for entry in entries if is_image_entry(entry)]
    class_dirs = [entry for entry in entries if entry.is_dir()]
    by_class = {entry.name: list(images_under(folder, Path(entry.path))) for entry in class_dirs}
    if any(by_class.values()):
        refuse_top_level_images(folder, top_images)
        refuse_empty_class_folders(folder, by_class)
        class_names = tuple(sorted(by_class))
        target_of = {name: target for target, name in enumerate(class_names)}
        found = [
            FoundImage(path, size, target_of[name])
            for name, images in by_class.items()
            for path, size in images
        ]
    elif top_images:
        class_names = None
        found = [
            FoundImage(manifest_path(folder, Path(e.path)), e.stat().st_size, NO_TARGET)
            for e in top_images
        ]
    else:
        raise ImageSourceError(
            f"no images found in {folder}; looked for {extensions_text()} files "
            "in class subfolders or at its top level"
        )
    return build_source(folder, found, class_names, hash_files)


def visible_entries(folder: Path) -> list[os.DirEntry[str]]:
    """Entries of ``folder`` whose names do not start with '.', sorted by name."""
    try:
        with os.scandir(folder) as entries:
            return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as error:
        raise ImageSourceError(
            f"cannot list folder {folder}: {error.strerror or error}; check its permissions"
        ) from error


def is_image_entry(entry: os.DirEntry[str]) -> bool:
    """A regular file (symlinks followed) with an image extension; broken links are errors."""
    if not is_image_name(entry.name):
        return False
    if entry.is_symlink() and not os.path.exists(entry.path):
        raise ImageSourceError(f"{entry.path} is a broken symlink; fix the link or remove it")
    return entry.is_file()


def images_under(root: Path, folder: Path) -> Iterator[tuple[str, int]]:
    """(relative path, size) of every image below ``folder``, following symlinked folders once."""
    seen: set[tuple[int, int]] = set()
    pending = [folder]
    while pending:
        current = pending.pop()
        info = os.stat(current)
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        for entry in visible_entries(current):
            if entry.is_dir():
                pending.append(Path(entry.path))
            elif is_image_entry(entry):
                yield manifest_path(root, Path(entry.path)), entry.stat().st_size


def manifest_path(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` as a manifest path, or an error saying to rename it."""
    relative = path.relative_to(root).as_posix()
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        raise ImageSourceError(
            f"file name {relative!r} under {root} is not valid UTF-8; rename the file"
        ) from None
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in relative):
        raise ImageSourceError(
            f"file name {relative!r} under {root} holds a control character; rename the file"
        )
    try:
        return check_relative_path(relative)
    except ValueError as error:
        raise ImageSourceError(f"{error}; rename the file under {root}") from None


def refuse_top_level_images(folder: Path, top_images: Sequence[os.DirEntry[str]]) -> None:
    """Images both at the top level and in class folders are ambiguous: refuse them."""
    if top_images:
        names = ", ".join(e.name for e in top_images[:SHOWN_NAMES])
        raise ImageSourceError(
            f"{folder} has class folders and also {len(top_images)} image(s) at its top level "
            f"({names}); move them into a class folder or remove them"
        )


def refuse_empty_class_folders(folder: Path, by_class: dict[str, list[tuple[str, int]]]) -> None:
    """A class folder without images would shift every later class index: refuse it."""
    empty = [name for name, images in by_class.items() if not images]
    if empty:
        raise ImageSourceError(
            f"class folder(s) {', '.join(empty[:SHOWN_NAMES])} in {folder} hold no "
            f"{extensions_text()} images; add their images or remove the folders "
            "(class indices follow the sorted folder names)"
        )
