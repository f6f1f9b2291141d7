"""The old home of the legacy FKD format, kept so ``from fkd.legacy import ...`` still works.

The format lives torch-free in ``fkd.storage_formats.legacy_fkd`` (with
``legacy_import`` and ``legacy_export``); reading and writing its torch files is
``fkd.legacy_fkd_convert``.
"""

from fkd.legacy_fkd_convert import (
    export_legacy,
    image_size,
    import_legacy,
    load_legacy_file,
    plan_import,
    save_legacy_file,
)
from fkd.storage_formats.legacy_fkd import (
    FKD_SPLIT,
    LEGACY_SUFFIX,
    LegacyFormatError,
    LegacyLabels,
    fkd_label_file,
    fkd_label_files,
    legacy_files,
    legacy_path,
)

__all__ = [
    "FKD_SPLIT",
    "LEGACY_SUFFIX",
    "LegacyFormatError",
    "LegacyLabels",
    "export_legacy",
    "fkd_label_file",
    "fkd_label_files",
    "image_size",
    "import_legacy",
    "legacy_files",
    "legacy_path",
    "load_legacy_file",
    "plan_import",
    "save_legacy_file",
]
