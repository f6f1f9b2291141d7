"""``fkd convert``: the original FKD per-image label files into a store, and back."""

from __future__ import annotations

from pathlib import Path

import click

from fkd.cli.options import library_errors


@click.command("convert")
@click.argument("source")
@click.option(
    "--from",
    "from_format",
    type=click.Choice(["fkd-legacy"]),
    default=None,
    help="SOURCE is a folder of original FKD files (<class>/<stem>.tar).",
)
@click.option(
    "--to",
    "to_format",
    type=click.Choice(["fkd-legacy"]),
    default=None,
    help="SOURCE is a store; write original FKD files.",
)
@click.option("--out", required=True, help="The store to create (--from) or folder to fill (--to).")
@click.option(
    "--data",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="With --from: the image folder, to match files to images and record their "
    "sizes. Without it, images are named <class>/<stem>.JPEG with unknown sizes.",
)
@click.option(
    "--num-classes",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="With --from: C, the number of classes of the teacher.",
)
@click.option(
    "--label-type",
    type=click.Choice(["marginal_smoothing", "marginal_renorm"]),
    default=None,
    help="With --from: how to read top-K files (FKD files do not say; default marginal_smoothing).",
)
@click.option(
    "--value-dtype",
    type=click.Choice(["float16", "uint8"]),
    default="float16",
    show_default=True,
    help="With --from: stored precision of probabilities.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing store (--from).")
@library_errors
def convert_command(
    source: str,
    from_format: str | None,
    to_format: str | None,
    out: str,
    data: Path | None,
    num_classes: int,
    label_type: str | None,
    value_dtype: str,
    overwrite: bool,
) -> None:
    """Convert between the original FKD per-image files and a store.

    \b
    fkd convert --from fkd-legacy FKD_DIR --out labels.zarr [--data IMAGES]
    fkd convert --to fkd-legacy labels.zarr --out FKD_DIR
    """
    from fkd import legacy
    from fkd.storage_formats import LabelStore

    if (from_format is None) == (to_format is None):
        raise click.UsageError("give exactly one of --from fkd-legacy or --to fkd-legacy")
    if from_format:
        store = legacy.import_legacy(
            Path(source), out, data, num_classes, label_type, value_dtype, overwrite=overwrite
        )
        click.echo(
            f"{out}: {store.spec.num_images} images, {store.spec.crops_per_image} crops "
            f"each, codec {store.spec.codec.name} K={store.spec.codec.k}"
        )
        return
    handle = LabelStore.open(source)
    if not handle.is_complete():
        raise click.ClickException(
            f"{source} has uncommitted blocks "
            f"{handle.uncommitted_blocks()[:5]}; finish generating first"
        )
    written = sum(1 for _ in legacy.export_legacy(handle, Path(out)))
    click.echo(f"{out}: wrote {written} FKD label files")
