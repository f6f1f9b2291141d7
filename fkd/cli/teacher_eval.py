"""``fkd teacher-eval``: a teacher's top-1/top-5 on a labelled folder, before a long run."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from fkd.cli.options import device_options, evaluation_options, library_errors, teacher_options
from fkd.cli.stopping import stops_cleanly


@click.command("teacher-eval")
@click.argument("data", type=click.Path(path_type=Path))
@teacher_options
@evaluation_options(batch_size=128)
@device_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@stops_cleanly("teacher-eval writes nothing; re-run it for the accuracy.")
@library_errors
def teacher_eval_command(
    data: Path,
    teachers: tuple[str, ...],
    weights: tuple[str, ...],
    batch_size: int,
    crop_pct: float,
    device: str,
    workers: int,
    as_json: bool,
) -> None:
    """Evaluate a teacher's top-1/top-5 accuracy on the labelled images in DATA.

    DATA is an ImageFolder tree or a labelled file list, read as fkd generate
    reads it (DATA/train is used when it exists, so point at DATA/val for
    held-out images). When the teacher names its classes, each class folder is
    matched to one of them by name or ImageNet wnid (n01440764), so a subset of
    them can be evaluated; otherwise the sorted folders are its classes 0, 1, ...
    """
    from fkd.evaluate import load_and_evaluate

    accuracy = load_and_evaluate(
        data, teachers, tuple(weights), device, batch_size, workers, crop_pct
    )
    click.echo(json.dumps(asdict(accuracy)) if as_json else accuracy.line())
