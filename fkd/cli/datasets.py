"""``fkd datasets``: real datasets written as ImageFolder trees, ready for generate and train."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import click

from fkd.cli.options import command
from fkd.options import option


@click.group("datasets")
def datasets_command() -> None:
    """Prepare real datasets as ImageFolder trees (DIR/train/<class>, DIR/val/<class>)."""


@dataclass(frozen=True)
class FashionMnistOptions:
    out: Path = option(
        "--out",
        file_okay=False,
        help="Folder to write (DIR/train/<class>/*.png, DIR/val/<class>/*.png, DIR/dataset.json).",
    )
    source: Path | None = option(
        "--source",
        default=None,
        file_okay=False,
        help="Folder holding the four gzip IDX files [default: $FKD_DATA, then Debian's "
        "/usr/share/datasets/fashion-mnist, then the official download].",
    )
    limit_per_class: int | None = option(
        "--limit-per-class",
        default=None,
        low=1,
        help="Keep the first N training images of each class (quick subsets) [default: all 6000].",
    )
    val_limit_per_class: int | None = option(
        "--val-limit-per-class",
        default=None,
        low=1,
        help="Keep the first N test images of each class for val/ [default: --limit-per-class].",
    )
    workers: int | None = option(
        "--workers", default=None, low=1, help="PNG-writing processes [default: one per CPU]."
    )
    overwrite: bool = option(
        "--overwrite", default=False, help="Rewrite a tree prepared with other options."
    )
    as_json: bool = option("--json", default=False, help="Print what was written as JSON.")


@command("fashion-mnist", FashionMnistOptions)
def fashion_mnist_command(options: FashionMnistOptions) -> None:
    """Write Fashion-MNIST (60k train, 10k test images, real class names) as PNG folders.

    A second run with the same options finds the tree already there; the tree is
    written aside and renamed into place, so an interrupted run leaves nothing behind.
    """
    from fkd.fashion_mnist import prepare_fashion_mnist

    prepared = prepare_fashion_mnist(
        options.out,
        options.source,
        options.limit_per_class,
        options.val_limit_per_class,
        options.workers,
        options.overwrite,
    )
    click.echo(json.dumps(prepared.to_dict()) if options.as_json else prepared.line())


datasets_command.add_command(fashion_mnist_command)
