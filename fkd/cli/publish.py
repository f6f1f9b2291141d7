"""``fkd publish``: a shareable copy of a store, with a dataset card and SHA256SUMS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from fkd import shared_options as shared
from fkd.cli.options import command
from fkd.options import option


@dataclass(frozen=True)
class PublishOptions:
    store: str = shared.store()
    out: Path = option("--out", help="A new folder for the published store (it must not exist).")
    make_zip: bool = option(
        "--zip",
        default=False,
        help="Also write OUT.zip, the same files in one archive (read with zarr's "
        "ZipStore or `fkd inspect OUT.zip`).",
    )


@command("publish", PublishOptions)
def publish_command(options: PublishOptions) -> None:
    """Copy a complete STORE to OUT with consolidated metadata, a README.md dataset card and
    SHA256SUMS; serve OUT over HTTP or upload it, and read it back with any fkd command."""
    from fkd.storage_formats.publish import publish_store

    for path in publish_store(options.store, options.out, options.make_zip):
        click.echo(f"wrote {path}")
