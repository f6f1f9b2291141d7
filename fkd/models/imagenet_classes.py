"""The 1000 ImageNet-1k class names, in the standard class-index order.

The names come from torchvision, which ships them with the package (no download).
"""

from __future__ import annotations

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
