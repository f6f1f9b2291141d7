"""Evaluation: one loop for the student during training, ``fkd eval`` and ``fkd teacher-eval``.

- ``dataset.py``: the labelled folder, resized and centre-cropped, its class folders
  matched to the model's classes (``load_eval_data``, ``EvalDataset``, ``model_targets``);
- ``loop.py``: the one loop, ``evaluate`` (top-1, top-5, cross-entropy; ``EvalResult``);
- ``student.py``: ``fkd eval``, a checkpoint of ``fkd train`` (``evaluate_checkpoint``);
- ``teacher.py``: ``fkd teacher-eval``, a teacher before a long run (``evaluate_teacher``,
  ``Accuracy``).

``fkd train`` evaluates every epoch through the same loop, summed over its processes
(``fkd.train.validation``).
"""

from fkd.evaluation.dataset import (
    EvalDataset,
    EvaluationError,
    as_model_classes,
    load_eval_data,
    model_targets,
)
from fkd.evaluation.loop import EvalResult, evaluate, model_input
from fkd.evaluation.student import evaluate_checkpoint
from fkd.evaluation.teacher import Accuracy, evaluate_teacher, load_and_evaluate

__all__ = [
    "Accuracy",
    "EvalDataset",
    "EvalResult",
    "EvaluationError",
    "as_model_classes",
    "evaluate",
    "evaluate_checkpoint",
    "evaluate_teacher",
    "load_and_evaluate",
    "load_eval_data",
    "model_input",
    "model_targets",
]
