"""``fkd datasets``: real datasets written as ImageFolder trees, ready for generate and train."""

from __future__ import annotations

import json
from pathlib import Path

import click

from fkd.cli.options import library_errors


@click.group("datasets")
def datasets_command() -> None:
    """Prepare real datasets as ImageFolder trees (DIR/train/<class>, DIR/val/<class>)."""


@datasets_command.command("fashion-mnist")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder to write (DIR/train/<class>/*.png, DIR/val/<class>/*.png, DIR/dataset.json).",
)
@click.option(
    "--source",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder holding the four gzip IDX files [default: $FKD_DATA, then Debian's "
    "/usr/share/datasets/fashion-mnist, then the official download].",
)
@click.option(
    "--limit-per-class",
    type=click.IntRange(min=1),
    default=None,
    help="Keep the first N training images of each class (quick subsets) [default: all 6000].",
)
@click.option(
    "--val-limit-per-class",
    type=click.IntRange(min=1),
    default=None,
    help="Keep the first N test images of each class for val/ [default: --limit-per-class].",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="PNG-writing processes [default: one per CPU].",
)
@click.option("--overwrite", is_flag=True, help="Rewrite a tree prepared with other options.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@library_errors
def fashion_mnist_command(
    out: Path,
    source: Path | None,
    limit_per_class: int | None,
    val_limit_per_class: int | None,
    workers: int | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Write Fashion-MNIST (60k train, 10k test images, real class names) as PNG folders.

    A second run with the same options finds the tree already there; the tree is
    written aside and renamed into place, so an interrupted run leaves nothing behind.
    """
    from fkd.datasets import prepare_fashion_mnist

    prepared = prepare_fashion_mnist(
        out, source, limit_per_class, val_limit_per_class, workers, overwrite
    )
    click.echo(json.dumps(prepared.to_dict()) if as_json else prepared.line())
