"""``scan_source``: DATA (an image folder or a file list) to an ``ImageSource``."""

from __future__ import annotations

from pathlib import Path

from fkd.images.file_list import scan_file_list
from fkd.images.folder_scan import scan_image_folder
from fkd.images.image_source import ImageSource, ImageSourceError


def scan_source(
    data: str | Path, hash_files: bool = False, root: str | Path | None = None
) -> ImageSource:
    """Scan DATA into an ``ImageSource``.

    DATA is either a folder or a file list:

    - A folder (``DATA/train`` when that is a folder): class subfolders of
      images (searched recursively) give targets by sorted class-folder name,
      like torchvision's ``ImageFolder``.  A folder whose images sit directly
      at its top level, with no class folder holding any, is taken as a flat,
      unlabelled folder (targets -1) rather than refused.  Only files with an
      ``IMAGE_EXTENSIONS`` suffix count; names starting with '.' are skipped.
    - A text file: one path per line, relative to the list's folder (or to
      ``root``), with an optional label column; see ``parse_file_list``.

    Images are ordered by relative POSIX path.  ``hash_files`` also computes
    every file's sha256.
    """
    path = Path(data)
    if not path.exists():
        raise ImageSourceError(f"DATA {path} does not exist; pass an image folder or a file list")
    if path.is_dir():
        if root is not None:
            raise ImageSourceError(
                f"root={root} only applies to a file list, but DATA {path} is a folder; "
                "drop root or pass a file list"
            )
        return scan_image_folder(path, hash_files)
    if not path.is_file():
        raise ImageSourceError(
            f"DATA {path} is neither a folder nor a regular file; pass an image folder or a "
            "file list"
        )
    return scan_file_list(path, hash_files, None if root is None else Path(root))
