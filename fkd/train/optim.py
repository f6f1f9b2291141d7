"""The optimiser (SGD or AdamW) and its per-step LR scheduler on the crop-epoch schedule."""

from __future__ import annotations

import torch
from torch import nn

from fkd.train.config import TrainConfig
from fkd.train.schedule import CropSchedule, lr_factor


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW over all parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    lr, decay = config.resolved_lr, config.resolved_weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=decay
        )
    return torch.optim.AdamW(params, lr=lr, weight_decay=decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, schedule: CropSchedule
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LambdaLR: step s runs at ``lr x lr_factor(crop-epoch at the middle of s)``."""

    def factor(step: int) -> float:
        return lr_factor(config, schedule.crop_epoch_at(step + 0.5))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
