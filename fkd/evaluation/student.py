"""``fkd eval``: top-1/top-5 of a ``fkd train`` checkpoint on a labelled folder.

Preprocessing (input size, mean, std, interpolation) and the class names come from the
checkpoint; the images go through the one evaluation loop (``fkd.evaluation.loop``).
"""

from __future__ import annotations

from pathlib import Path

from fkd.checkpoints import check_arch, load_checkpoint, load_model_state
from fkd.devices import resolve_device
from fkd.evaluation.dataset import load_eval_data
from fkd.evaluation.loop import EvalResult, evaluate
from fkd.models.registry import build_model, model_defaults


def evaluate_checkpoint(
    data: str | Path,
    checkpoint_path: str | Path,
    model_name: str | None = None,
    device_name: str = "auto",
    batch_size: int = 256,
    workers: int = 2,
    crop_pct: float = 0.875,
) -> EvalResult:
    """Top-1/top-5 of a ``fkd train`` checkpoint on ``DATA/val`` (or DATA itself)."""

    checkpoint = load_checkpoint(checkpoint_path)
    arch = model_name or checkpoint["arch"]
    check_arch(checkpoint, arch)
    defaults = model_defaults(arch)
    device = resolve_device(device_name)
    num_classes = int(checkpoint["num_classes"])
    model = build_model(arch, num_classes)
    load_model_state(model, checkpoint)
    model.to(device)
    folder = Path(data)
    if (folder / "val").is_dir():
        folder = folder / "val"
    input_size = int(checkpoint.get("input_size", defaults.input_size))
    mean = tuple(checkpoint.get("mean", defaults.mean))
    std = tuple(checkpoint.get("std", defaults.std))
    interpolation = str(checkpoint.get("interpolation", defaults.interpolation))
    loader = load_eval_data(
        folder,
        input_size,
        crop_pct,
        interpolation,
        batch_size,
        workers,
        num_classes,
        checkpoint.get("class_names"),
    )
    return evaluate(model, loader, device, mean, std)
