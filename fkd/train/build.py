"""Building a run: its data and validation loader, then the model (DDP-wrapped under
torchrun), optimiser, LR scheduler, AMP and targets every step shares (``StepContext``)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from fkd.checkpoints import check_arch, load_model_state
from fkd.devices import amp_dtype as choose_amp_dtype
from fkd.models import ModelDefaults
from fkd.models.registry import build_model
from fkd.train.config import TrainConfig, TrainError
from fkd.train.ddp import Distributed, wrap_model
from fkd.train.loading import TrainData, load_data
from fkd.train.optim import build_optimizer, build_scheduler
from fkd.train.schedule import CropSchedule
from fkd.train.step import StepContext
from fkd.train.targets import SoftTargets
from fkd.train.validation import default_val_folder, load_val_data


def seed_everything(seed: int, rank: int) -> None:
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)


def load_run_data(
    config: TrainConfig,
    defaults: ModelDefaults,
    teacher: Any,
    dist_info: Distributed,
    checkpoint: dict[str, Any] | None,
) -> tuple[TrainData, DataLoader[Any] | None]:
    """The training data and the validation loader (None: no validation folder).

    Refuses a checkpoint of another class count, and hard labels (no teacher, ``alpha``
    or ``kd_stop_epoch``) without a class in range for every image.
    """
    input_size = config.input_size or defaults.input_size
    needs_hard = not config.soft_labels or config.alpha > 0 or config.kd_stop_epoch is not None
    val_folder = default_val_folder(config)
    data = load_data(
        config,
        input_size,
        dist_info,
        teacher.num_classes if teacher else None,
        teacher.info.class_names if teacher else None,
        targets_used=needs_hard or val_folder is not None,
    )
    if checkpoint is not None:
        check_arch(checkpoint, config.model, data.num_classes)
    if needs_hard and not (
        bool((data.targets >= 0).all()) and int(data.targets.max()) < data.num_classes
    ):
        raise TrainError(
            f"{config.data}: hard labels (no teacher, --alpha or --kd-stop-epoch) need a class "
            f"in [0, {data.num_classes}) for every image (an ImageFolder tree or a labelled list)"
        )
    if dist_info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if val_folder is None:
        return data, None
    val_loader = load_val_data(
        config,
        val_folder,
        input_size,
        defaults.interpolation,
        data.num_classes,
        data.class_names,
        dist_info,
    )
    return data, val_loader


def build_step_context(
    config: TrainConfig,
    defaults: ModelDefaults,
    data: TrainData,
    teacher: Any,
    dist_info: Distributed,
    checkpoint: dict[str, Any] | None,
) -> StepContext:
    """The student (seeded, from ``checkpoint`` when resuming), its optimiser and targets."""
    device = dist_info.device
    seed_everything(config.seed, 0)
    model = build_model(config.model, data.num_classes).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if checkpoint is not None:
        load_model_state(model, checkpoint)
    train_model = wrap_model(model, dist_info)
    schedule = CropSchedule(config.epochs, config.crops_per_visit, len(data.loader))
    optimizer = build_optimizer(model, config)
    amp_dtype = choose_amp_dtype(config.amp, device)
    temperature = config.temperature or (data.store_temperature if teacher is None else 1.0)
    return StepContext(
        model=train_model,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, config, schedule),
        scaler=torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None,
        config=config,
        schedule=schedule,
        dist=dist_info,
        mean=tuple(defaults.mean),
        std=tuple(defaults.std),
        num_classes=data.num_classes,
        soft_targets=SoftTargets(
            device, amp_dtype, temperature, data.codec, data.store_temperature, teacher
        ),
        amp_dtype=amp_dtype,
        loss_fn=config.loss_config(temperature).build(),
        mix_config=config.mix_config(),
    )
