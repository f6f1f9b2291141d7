"""The evaluation after every epoch: the validation folder, each rank's share, counts summed.

``--val`` (else ``DATA/val`` when it exists) is scored through the one evaluation loop
(``fkd.evaluation``), the loop ``fkd eval`` and ``fkd teacher-eval`` run; under torchrun
each rank scores every ``world``-th image and the counts are all-reduced.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from fkd.evaluation import EvalResult, evaluate, load_eval_data
from fkd.train.config import TrainConfig
from fkd.train.ddp import Distributed, all_reduce_sum


def default_val_folder(config: TrainConfig) -> Path | None:
    """``--val``, else ``DATA/val`` when it exists, else none (no evaluation)."""
    if config.val is not None:
        return Path(config.val)
    candidate = Path(config.data) / "val"
    return candidate if candidate.is_dir() else None


def load_val_data(
    config: TrainConfig,
    folder: Path,
    input_size: int,
    interpolation: str,
    num_classes: int,
    class_names: Sequence[str] | None,
    dist_info: Distributed,
) -> DataLoader[Any]:
    """This rank's share of the validation folder; workers persist (used every epoch)."""
    return load_eval_data(
        folder,
        input_size,
        config.eval_crop_pct,
        interpolation,
        config.eval_batch_size,
        config.workers,
        num_classes,
        class_names,
        rank=dist_info.rank,
        world_size=dist_info.world_size,
        persistent_workers=True,
    )


def validate(
    model: nn.Module,
    loader: DataLoader[Any],
    mean: Sequence[float],
    std: Sequence[float],
    config: TrainConfig,
    amp_dtype: torch.dtype | None,
    dist_info: Distributed,
) -> EvalResult:
    """Top-1/top-5 and loss of ``model`` on the validation folder, summed over ranks."""
    return evaluate(
        model,
        loader,
        dist_info.device,
        mean,
        std,
        channels_last=config.channels_last,
        amp_dtype=amp_dtype,
        reduce=lambda totals: all_reduce_sum(totals, dist_info),
    )
