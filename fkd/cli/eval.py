"""``fkd eval``: top-1/top-5 of a ``fkd train`` checkpoint on a labelled folder."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from fkd.cli.options import evaluation_options, library_errors


@click.command("eval")
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--checkpoint",
    "checkpoint",
    required=True,
    metavar="CKPT",
    help="A checkpoint written by fkd train (or a folder holding checkpoint.pt).",
)
@click.option(
    "--model",
    "model",
    default=None,
    metavar="ARCH",
    help="The checkpoint's architecture [default: the one it records]; another "
    "architecture is refused.",
)
@evaluation_options(batch_size=256)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N.",
)
@click.option(
    "--workers",
    "-j",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Image decode processes (0: decode inline).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@library_errors
def eval_command(
    data: Path,
    checkpoint: str,
    model: str | None,
    batch_size: int,
    crop_pct: float,
    device: str,
    workers: int,
    as_json: bool,
) -> None:
    """Evaluate a trained student on DATA/val (or on DATA when it has no val folder).

    Preprocessing (input size, mean, std, interpolation) comes from the checkpoint;
    class folders are matched to its classes by name (or ImageNet wnid), else taken
    in sorted order.
    """
    from fkd.train import evaluate_checkpoint

    result = evaluate_checkpoint(data, checkpoint, model, device, batch_size, workers, crop_pct)
    click.echo(json.dumps(asdict(result)) if as_json else result.line())


if __name__ == "__main__":  # python -m fkd.cli.eval
    eval_command()
