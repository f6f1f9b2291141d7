"""``fkd inspect``: a readable (or ``--json``) summary of a store, and pictures of its crops."""

from __future__ import annotations

import json
from pathlib import Path

import click

from fkd.cli.options import library_errors, store_location


@click.command("inspect")
@click.argument("store", callback=store_location)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "--sample-images",
    type=click.IntRange(min=0),
    default=256,
    show_default=True,
    help="Images whose labels feed the label statistics.",
)
@click.option(
    "--show",
    "show",
    default=None,
    metavar="IMAGE_OR_INDEX",
    help="Draw this image (index or manifest path) with a sample of its crop boxes "
    "and their top-K labels; needs --data and --out.",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="For --show: the images the store was generated from, as DATA of fkd generate "
    "(an image folder, read at DATA/train when that is a folder, or a file list).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where --show writes its PNG.",
)
@library_errors
def inspect_command(
    store: str,
    as_json: bool,
    sample_images: int,
    show: str | None,
    data: Path | None,
    out: Path | None,
) -> None:
    """Summarise STORE: spec, teacher, sizes, failures and label statistics.

    STORE is a path or an fsspec URL (http://, s3://, memory://...).
    """
    from fkd.storage_formats import LabelStore
    from fkd.storage_formats.summary import summarize_store, summary_lines

    if show is not None and (data is None or out is None):
        raise click.UsageError("--show needs --data DIR (the images) and --out FILE.png")
    handle = LabelStore.open(store)
    summary = summarize_store(handle, sample_images)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo("\n".join(summary_lines(summary)))
    if show is not None and data is not None and out is not None:
        from fkd.visualize import draw_crops

        written = draw_crops(handle, show, data, out)
        if not as_json:
            click.echo(f"wrote {written}")
