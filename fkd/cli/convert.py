"""``fkd convert``: original FKD per-image label files into a store and back; re-encode a store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from fkd.cli.options import command
from fkd.options import argument, names_from, option


@dataclass(frozen=True, kw_only=True)
class ConvertOptions:
    source: str = argument("SOURCE")
    from_format: str | None = option(
        "--from",
        default=None,
        choices=("fkd-legacy",),
        help="SOURCE is a folder of original FKD files (<class>/<stem>.tar, in "
        "SOURCE/train when that is a folder).",
    )
    to_format: str | None = option(
        "--to",
        default=None,
        choices=("fkd-legacy", "store"),
        help="SOURCE is a store; write original FKD files (fkd-legacy), or a store whose "
        "labels are re-encoded with --label-type/--topk/--value-dtype from SOURCE's full "
        "distributions (store; SOURCE made with --label-type full; the teacher is not "
        "run). --to store without --label-type copies SOURCE's labels as they are into "
        "the current format version (upgrades a format v1 store).",
    )
    out: str = option("--out", help="The store to create (--from) or folder to fill (--to).")
    data: Path | None = option(
        "--data",
        default=None,
        help="With --from: the images (DATA/train when that is a folder, as fkd generate "
        "reads DATA), to match files to images and record their sizes and classes. "
        "Without it, images are named <class>/<stem>.JPEG with unknown sizes.",
    )
    num_classes: int = option(
        "--num-classes",
        default=1000,
        low=1,
        help="With --from: C, the number of classes of the teacher.",
    )
    label_type: str | None = option(
        "--label-type",
        default=None,
        help="With --from: how to read top-K files, marginal_smoothing (default; FKD "
        "files do not say) or marginal_renorm. With --to store: the codec to write (any "
        "registered).",
    )
    topk: int = option("--topk", default=5, low=1, help="With --to store: K of the top-K codecs.")
    value_dtype: str | None = option(
        "--value-dtype",
        default=None,
        choices=names_from("fkd.storage_formats.spec", "VALUE_DTYPES"),
        help="Stored precision of probabilities [default: float16 with --from, uint8 "
        "with --to store].",
    )
    split_dir: str = option(
        "--split-dir",
        default="train",
        help="With --to fkd-legacy: the folder between --out and the class folders. "
        "FKD's train_FKD.py reads DATA/train and looks labels up at "
        "SOFTLABEL/train/<class>/<stem>.tar, so the default lets it train with "
        "--softlabel_path FKD_DIR.",
    )
    overwrite: bool = option(
        "--overwrite",
        default=False,
        help="Replace an existing store (--from, --to store), or an existing export "
        "folder whole (--to fkd-legacy; only a folder holding nothing but FKD label "
        "files).",
    )


@command("convert", ConvertOptions)
def convert_command(options: ConvertOptions) -> None:
    """Convert between the original FKD per-image files and a store.

    \b
    fkd convert --from fkd-legacy FKD_DIR --out labels.zarr [--data DATA]
    fkd convert --to fkd-legacy labels.zarr --out FKD_DIR
    python train_FKD.py --softlabel_path FKD_DIR DATA   # FKD's own training script
    fkd convert --to store full.zarr --label-type marginal_smoothing --topk 5 --out top5.zarr
    fkd convert --to store old-v1.zarr --out new.zarr     # same labels, current format
    """
    if (options.from_format is None) == (options.to_format is None):
        raise click.UsageError(
            "give exactly one of --from fkd-legacy, --to fkd-legacy or --to store"
        )
    if options.to_format == "store":
        _recode(options)
    elif options.from_format:
        _import_legacy(options)
    else:
        _export_legacy(options)


def _import_legacy(options: ConvertOptions) -> None:
    from fkd.legacy_fkd_convert import import_legacy

    label_type, out = options.label_type, options.out
    if label_type not in (None, "marginal_smoothing", "marginal_renorm"):
        raise click.BadParameter(
            f"{label_type!r}: FKD files hold marginal_smoothing or marginal_renorm labels",
            param_hint="--label-type",
        )
    store = import_legacy(
        Path(options.source),
        out,
        options.data,
        options.num_classes,
        label_type,
        options.value_dtype or "float16",
        overwrite=options.overwrite,
    )
    click.echo(
        f"{out}: {store.spec.num_images} images, {store.spec.crops_per_image} crops "
        f"each, codec {store.spec.codec.name} K={store.spec.codec.k}"
    )


def _export_legacy(options: ConvertOptions) -> None:
    from fkd.legacy_fkd_convert import export_legacy
    from fkd.storage_formats import LabelStore

    source, out, split_dir = options.source, options.out, options.split_dir
    handle = LabelStore.open(source)
    if not handle.is_complete():
        raise click.ClickException(
            f"{source} has uncommitted blocks "
            f"{handle.uncommitted_blocks()[:5]}; finish generating first"
        )
    written = export_legacy(handle, Path(out), split_dir, options.overwrite)
    hint = f"; train with train_FKD.py --softlabel_path {out} DATA" if split_dir == "train" else ""
    click.echo(f"{out}: wrote {written} FKD label files under {split_dir}/{hint}")


def _recode(options: ConvertOptions) -> None:
    from fkd.storage_formats import LabelStore
    from fkd.storage_formats.label_codecs import codec_spec
    from fkd.storage_formats.transcode import transcode_store

    source, out, overwrite = options.source, options.out, options.overwrite
    handle = LabelStore.open(source)
    if options.label_type is None:  # copy the labels as stored, in the current format version
        store = transcode_store(handle, out, None, overwrite=overwrite)
        click.echo(
            f"{out}: {store.spec.num_images} images copied from {source} (format "
            f"v{handle.spec.format_version}) as format v{store.spec.format_version}"
        )
        return
    full, value_dtype = handle.spec.codec, options.value_dtype or "uint8"
    try:
        codec = codec_spec(
            options.label_type, full.num_classes, options.topk, full.temperature, value_dtype
        )
    except ValueError as exc:  # the codec's own checks (name, K <= C, value dtype): usage errors
        raise click.UsageError(str(exc)) from None
    store = transcode_store(handle, out, codec, overwrite=overwrite)
    click.echo(
        f"{out}: {store.spec.num_images} images re-encoded as {codec.name} K={codec.k} "
        f"({codec.value_dtype}) from {source}"
    )
