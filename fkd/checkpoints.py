"""Training checkpoints: everything needed to resume ``fkd train`` exactly, in one file.

A checkpoint is a plain dict written with ``torch.save`` and read back with
``torch.load(weights_only=True)`` only, so loading one never runs pickled code:

``format``, ``version``
    ``"fkd-train-checkpoint"`` and :data:`CHECKPOINT_VERSION`.
``model``
    The student's state dict (unwrapped from DDP / ``torch.compile``).
``arch``, ``num_classes``, ``input_size``, ``mean``, ``std``, ``interpolation``, ``class_names``
    What ``fkd.models.build_model`` and preprocessing need; the same keys make the file a
    teacher for the spec ``fkd:<arch>`` (see ``fkd.teachers``).
``optimizer``, ``scheduler``, ``scaler``
    Their ``state_dict()`` (``scaler`` only with float16 AMP).
``epoch``, ``crop_epoch``, ``global_step``
    Visits of the crop schedule completed (the loader's epoch to resume at), the crop
    passes they amount to, and optimiser steps taken.
``rng``
    torch (and CUDA) RNG states as uint8 tensors, numpy's MT19937 state and Python's
    ``random`` state as int64 tensors and plain numbers.
``args``
    The training configuration as a JSON-able dict (``TrainConfig.to_dict()``).
``best_top1``, ``metrics``
    The best evaluation top-1 so far and the last epoch's metrics (plain numbers).

Files are written to a temporary sibling and renamed into place (``os.replace``), so a
run killed while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fkd.exceptions import UserInputError
from fkd.weights import WeightsFileError, load_weights_only

__all__ = [
    "CHECKPOINT_FILE",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "check_arch",
    "get_rng_state",
    "jsonable",
    "load_checkpoint",
    "load_model_state",
    "resolve_checkpoint_path",
    "save_checkpoint",
    "set_rng_state",
    "unwrap_model",
]

CHECKPOINT_FORMAT = "fkd-train-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_FILE = "checkpoint.pt"
_REQUIRED = {"model": Mapping, "arch": str, "num_classes": int}


class CheckpointError(UserInputError):
    """A checkpoint that cannot be used as asked: missing, unreadable, another arch."""


# --------------------------------------------------------------------------- helpers


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def jsonable(value: Any) -> Any:
    """``value`` with tuples as lists and paths as strings (JSON- and weights_only-safe)."""
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot store {type(value).__name__} {value!r} in a checkpoint's args")


# --------------------------------------------------------------------------- RNG states


def get_rng_state() -> dict[str, Any]:
    """torch, CUDA, numpy and Python RNG states as tensors and plain numbers."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned (CUDA only where the devices match)."""
    torch.set_rng_state(state["torch"].to(torch.uint8).cpu())
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].cpu().numpy().astype(np.uint32),
            int(numpy_state["pos"]),
            int(numpy_state["has_gauss"]),
            float(numpy_state["cached_gaussian"]),
        )
    )
    python_state = state["python"]
    internal = tuple(int(v) for v in python_state["state"].tolist())
    random.setstate((int(python_state["version"]), internal, python_state["gauss_next"]))
    cuda_states = state.get("cuda")
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.to(torch.uint8).cpu() for s in cuda_states])


# --------------------------------------------------------------------------- save / load


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    arch: str,
    num_classes: int,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bilinear",
    class_names: Sequence[str] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    epoch: int = 0,
    crop_epoch: float = 0.0,
    global_step: int = 0,
    args: Mapping[str, Any] | None = None,
    best_top1: float | None = None,
    metrics: Mapping[str, Any] | None = None,
    rng: bool = True,
) -> Path:
    """Write a checkpoint atomically to ``path`` (see the module docstring); return the path."""
    checkpoint: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()},
        "arch": str(arch),
        "num_classes": int(num_classes),
        "input_size": int(input_size),
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "interpolation": str(interpolation),
        "class_names": None if class_names is None else [str(n) for n in class_names],
        "epoch": int(epoch),
        "crop_epoch": float(crop_epoch),
        "global_step": int(global_step),
        "args": jsonable(dict(args or {})),
        "best_top1": None if best_top1 is None else float(best_top1),
        "metrics": jsonable(dict(metrics or {})),
    }
    if optimizer is not None:
        checkpoint["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        checkpoint["scheduler"] = scheduler.state_dict()
    if scaler is not None:
        checkpoint["scaler"] = scaler.state_dict()
    if rng:
        checkpoint["rng"] = get_rng_state()
    if checkpoint["class_names"] is None:
        del checkpoint["class_names"]  # the teacher loader takes a missing entry as "none"
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(staging, "wb") as handle:
            torch.save(checkpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, target)
    finally:
        if staging.exists():
            staging.unlink()
    return target


def resolve_checkpoint_path(path: str | os.PathLike[str]) -> Path:
    """``path`` itself, or ``path/checkpoint.pt`` when ``path`` is a folder."""
    candidate = Path(path).expanduser()
    if candidate.is_dir():
        candidate = candidate / CHECKPOINT_FILE
    if not candidate.is_file():
        raise CheckpointError(f"checkpoint {os.fspath(candidate)!r} does not exist")
    return candidate


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint (a file, or a folder holding ``checkpoint.pt``) onto the CPU.

    Reads with :func:`fkd.weights.load_weights_only` (``torch.load(weights_only=True)``)
    only; a file that is not a plain checkpoint dict with ``model``, ``arch`` and
    ``num_classes`` is refused with a one-line error.
    """
    source = resolve_checkpoint_path(path)
    try:
        checkpoint = load_weights_only(source)
    except WeightsFileError as exc:
        raise CheckpointError(
            f"cannot read checkpoint {os.fspath(source)!r} as a plain tensor checkpoint "
            f"({exc.reason})"
        ) from exc
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"{os.fspath(source)!r} is not an fkd checkpoint (got {type(checkpoint).__name__})"
        )
    for key, kind in _REQUIRED.items():
        if not isinstance(checkpoint.get(key), kind):
            raise CheckpointError(
                f"{os.fspath(source)!r} is not an fkd train checkpoint: {key!r} is missing or "
                f"not a {kind.__name__}"
            )
    checkpoint["path"] = os.fspath(source)
    return checkpoint


def check_arch(checkpoint: Mapping[str, Any], arch: str, num_classes: int | None = None) -> None:
    """Refuse a checkpoint saved from another architecture (or class count)."""
    where = checkpoint.get("path", "checkpoint")
    saved = checkpoint["arch"]
    if saved != arch:
        raise CheckpointError(
            f"checkpoint {where!r} was saved from model {saved!r}, not {arch!r}; "
            f"pass --model {saved} or another checkpoint"
        )
    saved_classes = int(checkpoint["num_classes"])
    if num_classes is not None and saved_classes != num_classes:
        raise CheckpointError(
            f"checkpoint {where!r} has {saved_classes} classes but the data has {num_classes}"
        )


def load_model_state(model: nn.Module, checkpoint: Mapping[str, Any]) -> None:
    """Load the checkpoint's weights into ``model`` (strict), with a one-line error."""
    state: Mapping[str, Tensor] = checkpoint["model"]
    target = unwrap_model(model)
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {checkpoint.get('path', '')!r} does not fit model "
            f"{checkpoint['arch']!r}: {first}"
        ) from exc
