"""``fkd generate --check-fidelity N``: how faithful the stored labels are, measured.

For the first N decodable images of the store, on their stored boxes and flips:

- the teacher's outputs on the crops generation cut (the store's recorded
  ``teacher.resampling``, else this device's: uint8 per crop on CPU, batched
  ``roi_align`` on a GPU) are compared with its outputs on the exact
  reference path (torchvision's ``resized_crop`` per crop, antialiased, on
  float pixels): mean KL(reference || fast);
- the teacher's full distribution on the fast path is compared with the stored
  label after encode and decode: mean KL(teacher || stored) and top-1 agreement.

KL uses a floor of 1e-8 on the second distribution, so codecs that zero the tail
(``hard``, ``marginal_renorm``) give a large but finite figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fkd import crops as crop_ops
from fkd.exceptions import UserInputError
from fkd.images import ImageSource, decode_or_reason
from fkd.storage_formats import STATUS_OK, LabelStore
from fkd.teachers import LoadedTeacher

KL_FLOOR = 1e-8


@dataclass(frozen=True)
class FidelityReport:
    images: int
    crops: int
    kl_reference_vs_fast: float
    kl_teacher_vs_stored: float
    top1_agreement: float

    def lines(self) -> list[str]:
        return [
            f"fidelity on {self.images} images ({self.crops} crops): "
            f"KL(reference path || fast path) {self.kl_reference_vs_fast:.5f} nats; "
            f"KL(teacher || stored label) {self.kl_teacher_vs_stored:.4f} nats; "
            f"top-1 agreement {self.top1_agreement:.2%}",
        ]


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row, with q floored at 1e-8 (nats)."""
    p = p.double()
    q = q.double().clamp_min(KL_FLOOR)
    return (torch.xlogy(p, p) - p * q.log()).sum(dim=-1).clamp_min(0.0)  # >= 0 up to rounding


def check_fidelity(
    store: LabelStore,
    source: ImageSource,
    teacher: LoadedTeacher,
    device: torch.device,
    images: int,
    batch_size: int = 64,
) -> FidelityReport:
    from fkd.label_codecs_torch import decode_torch

    info, temperature = store.spec.teacher, store.spec.codec.temperature
    resampling = crop_ops.teacher_resampling(info.resampling, info.interpolation, device)
    kl_paths, kl_stored, agree, crops, used = [], [], [], 0, 0
    for index in _first_ok_images(store, images):
        pixels, _ = decode_or_reason(source.path_of(index), 2**31)
        if pixels is None:
            continue
        batch = store.read_images([index])
        height, width = pixels.shape[:2]
        boxes = crop_ops.fractions_to_pixels(batch.boxes[0], height, width)
        fast = crop_ops.cut(
            pixels, boxes, batch.flips[0], info.input_size, resampling, device, in_pixels=True
        )
        reference = crop_ops.cut_crops_reference(
            crop_ops.image_to_tensor(pixels, device),
            boxes,
            batch.flips[0],
            info.input_size,
            info.interpolation,
        )
        p_fast = _probabilities(teacher, fast, info.mean, info.std, temperature, batch_size)
        p_reference = _probabilities(
            teacher, reference, info.mean, info.std, temperature, batch_size
        )
        stored = decode_torch(
            {k: v[0] for k, v in batch.labels.items()}, store.spec.codec, device
        ).float()
        kl_paths.append(kl_divergence(p_reference, p_fast))
        kl_stored.append(kl_divergence(p_fast, stored))
        agree.append(p_fast.argmax(-1) == stored.argmax(-1))
        crops += len(boxes)
        used += 1
    if not used:
        raise UserInputError("--check-fidelity: no decodable image in the committed blocks")
    return FidelityReport(
        images=used,
        crops=crops,
        kl_reference_vs_fast=float(torch.cat(kl_paths).mean()),
        kl_teacher_vs_stored=float(torch.cat(kl_stored).mean()),
        top1_agreement=float(torch.cat(agree).float().mean()),
    )


def _first_ok_images(store: LabelStore, count: int) -> list[int]:
    committed = store.committed_mask(refresh=True)
    status = store.per_image("image_status")
    chosen = []
    for index in range(store.spec.num_images):
        if committed[store.block_of(index)] and status[index] == STATUS_OK:
            chosen.append(index)
            if len(chosen) == count:
                break
    return chosen


def _probabilities(
    teacher: LoadedTeacher,
    crops: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    temperature: float,
    batch_size: int,
) -> torch.Tensor:
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(crops), batch_size):
            batch = crop_ops.normalise(crops[start : start + batch_size], mean, std)
            outputs.append(
                teacher.probabilities(
                    batch.contiguous(memory_format=torch.channels_last), temperature
                ).float()
            )
    return torch.cat(outputs)


__all__ = ["FidelityReport", "check_fidelity"]
