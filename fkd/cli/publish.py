"""``fkd publish``: a shareable copy of a store, with a dataset card and SHA256SUMS."""

from __future__ import annotations

from pathlib import Path

import click

from fkd.cli.options import library_errors, store_location


@click.command("publish")
@click.argument("store", callback=store_location)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="A new folder for the published store (it must not exist).",
)
@click.option(
    "--zip",
    "make_zip",
    is_flag=True,
    help="Also write OUT.zip, the same files in one archive (read with zarr's ZipStore "
    "or `fkd inspect OUT.zip`).",
)
@library_errors
def publish_command(store: str, out: Path, make_zip: bool) -> None:
    """Copy a complete STORE to OUT with consolidated metadata, a README.md dataset card and
    SHA256SUMS; serve OUT over HTTP or upload it, and read it back with any fkd command."""
    from fkd.storage_formats.publish import publish_store

    for path in publish_store(store, out, make_zip):
        click.echo(f"wrote {path}")
