"""The 1000 ImageNet-1k class names, in the standard class-index order.

The names come from torchvision, which ships them with the package (no download).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

NUM_IMAGENET_CLASSES = 1000


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """Return the 1000 ImageNet-1k class names; index ``i`` names logit ``i``."""
    from torchvision.models import ResNet50_Weights  # deferred: torchvision.models is slow

    names = tuple(str(name) for name in ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    if len(names) != NUM_IMAGENET_CLASSES:
        raise RuntimeError(
            f"torchvision returned {len(names)} ImageNet class names, "
            f"expected {NUM_IMAGENET_CLASSES}"
        )
    return names


def imagenet_wnids_for(class_names: Sequence[str] | None) -> tuple[str, ...] | None:
    """ImageNet-1k's wnids, one per class, when ``class_names`` are its 1000 names; else None.

    So folders named by wnid (``n01440764``), as in the ILSVRC-2012 trees, map to the
    classes of an ImageNet teacher (EfficientNet-Lite0, torchvision's and timm's
    ImageNet-1k models), whose class names fkd takes from torchvision.
    """
    if class_names is None or len(class_names) != NUM_IMAGENET_CLASSES:
        return None
    if tuple(class_names) != imagenet_class_names():
        return None
    from fkd.models.imagenet_wnids import IMAGENET_WNIDS

    return IMAGENET_WNIDS
