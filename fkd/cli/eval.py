"""``fkd eval``: top-1/top-5 of a ``fkd train`` checkpoint on a labelled folder."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from fkd import shared_options as shared
from fkd.cli.options import command
from fkd.options import argument, option


@dataclass(frozen=True)
class EvalOptions:
    data: Path = argument("DATA")
    checkpoint: str = option(
        "--checkpoint",
        metavar="CKPT",
        help="A checkpoint written by fkd train (or a folder holding checkpoint.pt).",
    )
    model: str | None = option(
        "--model",
        default=None,
        metavar="ARCH",
        help="The checkpoint's architecture [default: the one it records]; another "
        "architecture is refused.",
    )
    batch_size: int = shared.eval_batch_size(256)
    crop_pct: float = shared.crop_pct()
    device: str = shared.device()
    workers: int = option(
        "--workers", "-j", default=2, low=0, help="Image decode processes (0: decode inline)."
    )
    as_json: bool = shared.result_as_json()


@command("eval", EvalOptions)
def eval_command(options: EvalOptions) -> None:
    """Evaluate a trained student on DATA/val (or on DATA when it has no val folder).

    Preprocessing (input size, mean, std, interpolation) comes from the checkpoint;
    class folders are matched to its classes by name (or ImageNet wnid), else taken
    in sorted order.
    """
    from fkd.evaluation import evaluate_checkpoint

    result = evaluate_checkpoint(
        options.data,
        options.checkpoint,
        options.model,
        options.device,
        options.batch_size,
        options.workers,
        options.crop_pct,
    )
    click.echo(json.dumps(asdict(result)) if options.as_json else result.line())


if __name__ == "__main__":  # python -m fkd.cli.eval
    eval_command()
