"""``fkd teacher-eval``: a teacher's top-1/top-5 on a labelled folder, before a long run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from fkd import shared_options as shared
from fkd.cli.options import command
from fkd.options import argument


@dataclass(frozen=True)
class TeacherEvalOptions:
    data: Path = argument("DATA")
    teachers: tuple[str, ...] = shared.teachers()
    weights: tuple[str, ...] = shared.weights()
    batch_size: int = shared.eval_batch_size(128)
    crop_pct: float = shared.crop_pct()
    device: str = shared.device()
    workers: int = shared.decode_workers()
    as_json: bool = shared.result_as_json()


@command(
    "teacher-eval",
    TeacherEvalOptions,
    stops="teacher-eval writes nothing; re-run it for the accuracy.",
)
def teacher_eval_command(options: TeacherEvalOptions) -> None:
    """Evaluate a teacher's top-1/top-5 accuracy on the labelled images in DATA.

    DATA is an ImageFolder tree or a labelled file list, read as fkd generate
    reads it (DATA/train is used when it exists, so point at DATA/val for
    held-out images). When the teacher names its classes, each class folder is
    matched to one of them by name or ImageNet wnid (n01440764), so a subset of
    them can be evaluated; otherwise the sorted folders are its classes 0, 1, ...
    """
    from fkd.evaluation import load_and_evaluate

    accuracy = load_and_evaluate(
        options.data,
        options.teachers,
        options.weights,
        options.device,
        options.batch_size,
        options.workers,
        options.crop_pct,
    )
    click.echo(json.dumps(asdict(accuracy)) if options.as_json else accuracy.line())
