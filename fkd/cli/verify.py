"""``fkd verify``: check every checksum and invariant of a store (exit 0 only if all hold)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fkd import shared_options as shared
from fkd.cli.options import command
from fkd.options import option

if TYPE_CHECKING:
    from fkd.storage_formats.verify import Problem

ARRAY_NAMED = re.compile(r"array '([^']+)'")  # the array a Problem.what names, if any


@dataclass(frozen=True)
class VerifyOptions:
    store: str = shared.store()
    data: Path | None = option(
        "--data",
        default=None,
        help="Also check that this image folder (or file list) still matches the "
        "store's manifest: names and sizes.",
    )


@command("verify", VerifyOptions)
def verify_command(options: VerifyOptions) -> None:
    """Read every chunk of STORE, check its crc32c and the format's invariants.

    STORE is a path or an fsspec URL. Exit status 0 only if everything holds;
    otherwise each problem is listed with its block and image names.
    """
    from fkd.storage_formats.verify import verify_store

    store, manifest = options.store, None
    if options.data is not None:
        from fkd.images import scan_source
        from fkd.storage_formats import LabelStore

        hashed = LabelStore.open(store).spec.file_hashes
        manifest = scan_source(options.data, hash_files=hashed).manifest
    problems = verify_store(store, manifest)
    if problems:
        for problem in problems:
            click.echo(problem.line(), err=True)
        raise click.ClickException(
            f"{store}: {len(problems)} problem(s) found{repair_hint(store, problems)}"
        )
    click.echo(f"{store}: OK (every chunk read and checked)")


def repair_hint(store: str, problems: list[Problem]) -> str:
    """How to repair what ``problems`` found, when fkd can: empty otherwise.

    A committed block whose own arrays are damaged is re-labelled with
    ``--redo-blocks``; the image list (written once, when the store was made) is not
    part of any block, so damage there means making the store again.
    """
    from fkd.storage_formats import LabelStore, StoreError

    try:
        handle = LabelStore.open(store)
        committed = handle.committed_mask(refresh=True)
    except StoreError:
        return ""
    blocks: set[int] = set()
    manifest = False
    for problem in problems:
        array = ARRAY_NAMED.search(problem.what)
        layout = handle.layout.get(array.group(1)) if array else None
        if problem.where == "manifest" or (layout is not None and layout.writer == "create"):
            manifest = True
        elif problem.block is not None and committed[problem.block]:
            blocks.add(problem.block)
    hints = []
    if blocks:
        hints.append(
            "re-label the damaged committed block(s) with the `fkd generate` command that "
            f"made the store plus --redo-blocks {','.join(map(str, sorted(blocks)))}"
        )
    if manifest:
        hints.append(
            "its image list is damaged (written once, with the store): make the store again "
            "with the `fkd generate` command that made it plus --overwrite"
        )
    return "".join(f"; {hint}" for hint in hints)
