"""``fkd inspect``: a readable (or ``--json``) summary of a store, and pictures of its crops."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import click

from fkd import shared_options as shared
from fkd.cli.options import command
from fkd.options import option


@dataclass(frozen=True)
class InspectOptions:
    store: str = shared.store()
    as_json: bool = option("--json", default=False, help="Print the summary as JSON.")
    sample_images: int = option(
        "--sample-images", default=256, low=0, help="Images whose labels feed the label statistics."
    )
    show: str | None = option(
        "--show",
        default=None,
        metavar="IMAGE_OR_INDEX",
        help="Draw this image (index or manifest path) with a sample of its crop boxes "
        "and their top-K labels; needs --data and --out.",
    )
    data: Path | None = option(
        "--data",
        default=None,
        help="For --show: the images the store was generated from, as DATA of fkd generate "
        "(an image folder, read at DATA/train when that is a folder, or a file list).",
    )
    out: Path | None = option(
        "--out", default=None, dir_okay=False, help="Where --show writes its PNG."
    )


@command("inspect", InspectOptions)
def inspect_command(options: InspectOptions) -> None:
    """Summarise STORE: spec, teacher, sizes, failures and label statistics.

    STORE is a path or an fsspec URL (http://, s3://, memory://...).
    """
    from fkd.storage_formats import LabelStore
    from fkd.storage_formats.summary import summarize_store, summary_lines

    show, data, out = options.show, options.data, options.out
    if show is not None and (data is None or out is None):
        raise click.UsageError("--show needs --data DIR (the images) and --out FILE.png")
    handle = LabelStore.open(options.store)
    summary = summarize_store(handle, options.sample_images)
    if options.as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo("\n".join(summary_lines(summary)))
    if show is not None and data is not None and out is not None:
        from fkd.visualize import draw_crops

        written = draw_crops(handle, show, data, out)
        if not options.as_json:
            click.echo(f"wrote {written}")
