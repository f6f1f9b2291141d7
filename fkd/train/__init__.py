"""``fkd train``: train a student on stored crops and soft labels, with no teacher.

Torchvision's classification reference in shape (small plain functions), with FKD's way
of counting crop-epochs.  Where things are:

- ``options.py``: ``TrainOptions``, every option of the command, declared once;
- ``config.py``: ``TrainConfig``, those options checked once, and what derives from them;
  ``TrainError``;
- ``schedule.py``: crop-epochs and visits (``CropSchedule``), the LR factor, the
  per-visit mixing generator;
- ``optim.py``: ``build_optimizer`` / ``build_scheduler``;
- ``loading.py``: ``load_data``, the training loader (the store's crops and labels via
  ``fkd.data``, or crops sampled on the fly), class folders matched to the teacher's;
- ``targets.py``: soft targets from the store (dense labels rebuilt on the device by
  ``fkd.label_codecs_torch.decode_torch``) or a live teacher, and the hard-label loss;
- ``step.py``: one optimiser step (crops, targets, Mixup/CutMix, loss, update);
- ``build.py``: the run's data, model, optimiser, AMP and ``StepContext``;
- ``loop.py``: ``train`` (the entry), ``main`` and ``train_one_epoch``;
- ``validation.py``: the evaluation after each epoch (the one loop of ``fkd.evaluation``);
- ``checkpointing.py``: the run folder, the checkpoint after each epoch, resuming;
- ``metrics.py``: ``metrics.jsonl``;
- ``ddp.py``: where torchrun is set up (process group, DDP, all-reduce).

Crop-epochs.  Each visit of an image cuts ``N = crops_per_visit`` crops from one
decode, so one pass of the loader (a *visit*, logged as an ``epoch``) is worth N
passes over crops; ``epochs`` counts crop passes as FKD does (``schedule.py``).

Label sources, per step (``targets.py``): a store's labels; an ``online_teacher``
labelling the very crops the student sees; or hard labels on the same kind of
random-resized crops, N per visit, so budgets compare.  One crop path: without a store,
boxes are drawn by the store's sampler for M = ``crops_per_image`` crops per image
(default N x visits, every crop fresh) with ``seed``, and each visit takes the crops of
the same ``crop_schedule`` the FKD loader uses; all three students cut through
``fkd.crops.cut`` with the CPU worker's resampling.  So a hard-label or online-KD run
with the M, scale, ratio, flip probability and seed of a store sees exactly the FKD
student's crops.  The metrics record the crop path (``crops_from``, ``resampling``).

``kd_stop_epoch`` switches to hard labels once that crop-epoch is reached
(Cho & Hariharan 2019); ``alpha`` mixes a hard-label term into the soft loss.

Distributed (``ddp.py``): under ``torchrun`` every process trains on a disjoint
``1/world`` of the images; ``batch_size`` is the global number of crops per step.
Rank 0 alone writes metrics and checkpoints; evaluation counts are all-reduced.

Resuming (``checkpointing.py``) restores model, optimiser, scheduler, AMP scaler and
RNG states and continues at the next visit: crops, their order, mixing and the LR
schedule are pure functions of (seed, visit, rank), so a killed run resumed follows the
same schedule as one that never stopped.

``import fkd.train`` loads no torch: each name below is imported from its module on
first use, so ``fkd train`` checks its options (``config.py``) before heavy imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fkd.lazy_exports import lazy_exports

if TYPE_CHECKING:  # the same names, for type checkers
    from fkd.evaluation import EvalResult, evaluate, evaluate_checkpoint
    from fkd.train.config import TrainConfig, TrainError
    from fkd.train.ddp import Distributed, init_distributed
    from fkd.train.loading import TrainData, load_data
    from fkd.train.loop import TrainResult, train, train_one_epoch
    from fkd.train.metrics import METRICS_FILE, iter_metrics
    from fkd.train.optim import build_optimizer, build_scheduler
    from fkd.train.schedule import CropSchedule, lr_factor, mix_generator

_HOMES = {
    "EvalResult": "fkd.evaluation",
    "evaluate": "fkd.evaluation",
    "evaluate_checkpoint": "fkd.evaluation",
    "TrainConfig": "fkd.train.config",
    "TrainError": "fkd.train.config",
    "Distributed": "fkd.train.ddp",
    "init_distributed": "fkd.train.ddp",
    "TrainData": "fkd.train.loading",
    "load_data": "fkd.train.loading",
    "TrainResult": "fkd.train.loop",
    "train": "fkd.train.loop",
    "train_one_epoch": "fkd.train.loop",
    "METRICS_FILE": "fkd.train.metrics",
    "iter_metrics": "fkd.train.metrics",
    "build_optimizer": "fkd.train.optim",
    "build_scheduler": "fkd.train.optim",
    "CropSchedule": "fkd.train.schedule",
    "lr_factor": "fkd.train.schedule",
    "mix_generator": "fkd.train.schedule",
}

__all__ = [
    "METRICS_FILE",
    "CropSchedule",
    "Distributed",
    "EvalResult",
    "TrainConfig",
    "TrainData",
    "TrainError",
    "TrainResult",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "evaluate_checkpoint",
    "init_distributed",
    "iter_metrics",
    "load_data",
    "lr_factor",
    "mix_generator",
    "train",
    "train_one_epoch",
]

__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
