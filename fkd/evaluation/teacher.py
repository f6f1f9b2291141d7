"""``fkd teacher-eval``: a teacher's top-1/top-5 on a labelled image folder, before a long run.

The teacher is scored by its probabilities (an ensemble averages its members'), through
the one evaluation loop (``fkd.evaluation.loop``) with the teacher's own preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fkd.evaluation.dataset import load_eval_data
from fkd.evaluation.loop import evaluate

if TYPE_CHECKING:
    from fkd.teachers import LoadedTeacher


@dataclass(frozen=True)
class Accuracy:
    top1: float
    top5: float
    images: int
    failed: int

    def line(self) -> str:
        return f"top-1 {self.top1:.2f}%  top-5 {self.top5:.2f}%  on {self.images} image(s)" + (
            f" ({self.failed} failed to decode, skipped)" if self.failed else ""
        )


def evaluate_teacher(
    teacher: LoadedTeacher,
    data: Path,
    batch_size: int = 128,
    workers: int = 2,
    crop_pct: float = 0.875,
) -> Accuracy:
    info = teacher.info
    loader = load_eval_data(
        data,
        info.input_size,
        crop_pct,
        info.interpolation,
        batch_size,
        workers,
        teacher.num_classes,
        info.class_names,
        model_what=f"teacher {info.spec!r}",
        kind="teacher",
    )
    device = next(iter(teacher.module.parameters())).device
    result = evaluate(
        lambda x: teacher.probabilities(x, 1.0),
        loader,
        device,
        info.mean,
        info.std,
        channels_last=True,
        with_loss=False,
    )
    return Accuracy(result.top1, result.top5, max(result.images, 1), result.failed)


def load_and_evaluate(
    data: Path,
    specs: tuple[str, ...],
    weights: tuple[str, ...],
    device: str,
    batch_size: int,
    workers: int,
    crop_pct: float,
) -> Accuracy:
    from fkd.devices import resolve_device
    from fkd.teachers import load_teachers

    teacher = load_teachers(specs, weights, resolve_device(device))
    return evaluate_teacher(teacher, data, batch_size, workers, crop_pct)
