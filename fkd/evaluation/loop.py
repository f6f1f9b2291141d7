"""The one evaluation loop: top-1, top-5 and cross-entropy of a model over a loader.

``fkd train`` (every epoch, on each rank's share), ``fkd eval`` (a checkpoint) and
``fkd teacher-eval`` (a teacher's probabilities) all run :func:`evaluate`.  Images that
failed to decode are counted and left out; the inputs are normalised on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from fkd import crops as crop_ops
from fkd.checkpoints import unwrap_model
from fkd.devices import autocast


@dataclass(frozen=True)
class EvalResult:
    top1: float
    top5: float
    loss: float
    images: int
    failed: int

    def line(self) -> str:
        failed = f" ({self.failed} failed to decode)" if self.failed else ""
        return (
            f"top-1 {self.top1:.2f}%  top-5 {self.top5:.2f}%  loss {self.loss:.4f}  "
            f"on {self.images} images{failed}"
        )


def model_input(
    images: Tensor, mean: Sequence[float], std: Sequence[float], channels_last: bool
) -> Tensor:
    """Pixels in 0..255 normalised with ``mean``/``std`` (channels-last when asked)."""
    x = crop_ops.normalise(images, mean, std)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def evaluate(
    model: nn.Module | Callable[[Tensor], Tensor],
    loader: DataLoader[Any],
    device: torch.device,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    channels_last: bool = False,
    amp_dtype: torch.dtype | None = None,
    with_loss: bool = True,
    reduce: Callable[[list[float]], list[float]] | None = None,
) -> EvalResult:
    """Top-1/top-5 (%) and mean cross-entropy of ``model`` over ``loader``'s decoded images.

    ``model`` maps a normalised batch to class scores: a module (put in eval mode for the
    pass; a DDP wrapper is unwrapped) returning logits, or any callable, e.g. a teacher's
    probabilities (``with_loss=False`` then: the loss is left at 0).  ``reduce`` sums the
    counts over processes (``fkd.train.ddp.all_reduce_sum``) before the ratios are taken.
    """
    module = unwrap_model(model) if isinstance(model, nn.Module) else None
    was_training = module is not None and module.training
    if module is not None:
        module.eval()
    predict = model if module is None else module
    totals = [0.0, 0.0, 0.0, 0.0, 0.0]  # correct1, correct5, loss sum, seen, failed
    with torch.inference_mode():
        for images, targets, ok in loader:
            valid = ok.bool()
            totals[4] += float((~valid).sum())
            if not bool(valid.any()):
                continue
            x = model_input(images[valid].to(device), mean, std, channels_last)
            y = targets[valid].to(device)
            with autocast(device, amp_dtype):
                scores = predict(x)
            scores = scores.float()
            top = scores.topk(min(5, scores.shape[-1]), dim=-1).indices
            hit = top == y[:, None]
            totals[0] += float(hit[:, 0].sum())
            totals[1] += float(hit.any(-1).sum())
            if with_loss:
                totals[2] += float(F.cross_entropy(scores, y, reduction="sum"))
            totals[3] += float(len(y))
    if module is not None:
        module.train(was_training)
    correct1, correct5, loss_sum, seen, failed = totals if reduce is None else reduce(totals)
    seen_n = max(seen, 1.0)
    return EvalResult(
        100.0 * correct1 / seen_n,
        100.0 * correct5 / seen_n,
        loss_sum / seen_n,
        int(seen),
        int(failed),
    )
