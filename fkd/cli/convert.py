"""``fkd convert``: original FKD per-image label files into a store and back; re-encode a store."""

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
    help="SOURCE is a folder of original FKD files (<class>/<stem>.tar, in SOURCE/train "
    "when that is a folder).",
)
@click.option(
    "--to",
    "to_format",
    type=click.Choice(["fkd-legacy", "store"]),
    default=None,
    help="SOURCE is a store; write original FKD files (fkd-legacy), or a store whose "
    "labels are re-encoded with --label-type/--topk/--value-dtype from SOURCE's full "
    "distributions (store; SOURCE made with --label-type full; the teacher is not run). "
    "--to store without --label-type copies SOURCE's labels as they are into the current "
    "format version (upgrades a format v1 store).",
)
@click.option("--out", required=True, help="The store to create (--from) or folder to fill (--to).")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="With --from: the images (DATA/train when that is a folder, as fkd generate reads "
    "DATA), to match files to images and record their sizes and classes. Without it, "
    "images are named <class>/<stem>.JPEG with unknown sizes.",
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
    default=None,
    help="With --from: how to read top-K files, marginal_smoothing (default; FKD files do "
    "not say) or marginal_renorm. With --to store: the codec to write (any registered).",
)
@click.option(
    "--topk",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="With --to store: K of the top-K codecs.",
)
@click.option(
    "--value-dtype",
    type=click.Choice(["float16", "uint8"]),
    default=None,
    help="Stored precision of probabilities [default: float16 with --from, uint8 with --to store].",
)
@click.option(
    "--split-dir",
    default="train",
    show_default=True,
    help="With --to fkd-legacy: the folder between --out and the class folders. FKD's "
    "train_FKD.py reads DATA/train and looks labels up at "
    "SOFTLABEL/train/<class>/<stem>.tar, so the default lets it train with "
    "--softlabel_path FKD_DIR.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an existing store (--from, --to store), or an existing export folder "
    "whole (--to fkd-legacy; only a folder holding nothing but FKD label files).",
)
@library_errors
def convert_command(
    source: str,
    from_format: str | None,
    to_format: str | None,
    out: str,
    data: Path | None,
    num_classes: int,
    label_type: str | None,
    topk: int,
    value_dtype: str | None,
    split_dir: str,
    overwrite: bool,
) -> None:
    """Convert between the original FKD per-image files and a store.

    \b
    fkd convert --from fkd-legacy FKD_DIR --out labels.zarr [--data DATA]
    fkd convert --to fkd-legacy labels.zarr --out FKD_DIR
    python train_FKD.py --softlabel_path FKD_DIR DATA   # FKD's own training script
    fkd convert --to store full.zarr --label-type marginal_smoothing --topk 5 --out top5.zarr
    fkd convert --to store old-v1.zarr --out new.zarr     # same labels, current format
    """
    from fkd import legacy
    from fkd.storage_formats import LabelStore

    if (from_format is None) == (to_format is None):
        raise click.UsageError(
            "give exactly one of --from fkd-legacy, --to fkd-legacy or --to store"
        )
    if to_format == "store":
        _recode(source, out, label_type, topk, value_dtype or "uint8", overwrite)
        return
    if from_format:
        if label_type not in (None, "marginal_smoothing", "marginal_renorm"):
            raise click.BadParameter(
                f"{label_type!r}: FKD files hold marginal_smoothing or marginal_renorm labels",
                param_hint="--label-type",
            )
        store = legacy.import_legacy(
            Path(source),
            out,
            data,
            num_classes,
            label_type,
            value_dtype or "float16",
            overwrite=overwrite,
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
    written = legacy.export_legacy(handle, Path(out), split_dir, overwrite)
    hint = f"; train with train_FKD.py --softlabel_path {out} DATA" if split_dir == "train" else ""
    click.echo(f"{out}: wrote {written} FKD label files under {split_dir}/{hint}")


def _recode(
    source: str, out: str, label_type: str | None, topk: int, value_dtype: str, overwrite: bool
) -> None:
    from fkd.storage_formats import LabelStore
    from fkd.storage_formats.label_codecs import codec_spec
    from fkd.storage_formats.transcode import transcode_store

    handle = LabelStore.open(source)
    if label_type is None:  # copy the labels as stored, in the current format version
        store = transcode_store(handle, out, None, overwrite=overwrite)
        click.echo(
            f"{out}: {store.spec.num_images} images copied from {source} (format "
            f"v{handle.spec.format_version}) as format v{store.spec.format_version}"
        )
        return
    full = handle.spec.codec
    try:
        codec = codec_spec(label_type, full.num_classes, topk, full.temperature, value_dtype)
    except ValueError as exc:  # the codec's own checks (name, K <= C, value dtype): usage errors
        raise click.UsageError(str(exc)) from None
    store = transcode_store(handle, out, codec, overwrite=overwrite)
    click.echo(
        f"{out}: {store.spec.num_images} images re-encoded as {codec.name} K={codec.k} "
        f"({codec.value_dtype}) from {source}"
    )
