"""Student (and teacher) architectures by name: ``build_model(arch, num_classes)``.

``arch`` is one of

- a registered name (``model_names()``): the small CNNs of ``fkd.models.small`` for
  28-32 px images, and ``efficientnet_lite0`` (randomly initialised);
- a torchvision classification model, ``resnet18`` or ``torchvision:resnet18``, built
  with ``torchvision.models.get_model(name, weights=None, num_classes=...)``;
- ``timm:<name>`` when timm is installed (``timm.create_model(name, pretrained=False)``).

Every model maps normalised ``[B, in_channels, S, S]`` images to ``[B, num_classes]``
logits.  :func:`model_defaults` gives the input size, mean, std and interpolation a
model expects, which ``fkd train`` uses unless told otherwise and writes into its
checkpoints (so ``fkd:<arch>`` teacher specs preprocess the same way).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from fkd.exceptions import UserInputError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ModelDefaults",
    "ModelError",
    "build_model",
    "model_defaults",
    "model_names",
    "register_model",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

ModelFactory = Callable[[int, int], nn.Module]
"""``factory(num_classes, in_channels)`` returns a freshly initialised module."""


class ModelError(UserInputError):
    """An architecture name or option the user has to fix."""


@dataclass(frozen=True)
class ModelDefaults:
    """The preprocessing a model is designed for."""

    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"


@dataclass(frozen=True)
class _Entry:
    factory: ModelFactory
    defaults: ModelDefaults
    description: str


_REGISTRY: dict[str, _Entry] = {}
_TORCHVISION_PREFIX = "torchvision:"
_TIMM_PREFIX = "timm:"


def register_model(
    name: str,
    *,
    input_size: int = 224,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    interpolation: str = "bilinear",
    description: str = "",
) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator registering ``factory(num_classes, in_channels) -> nn.Module`` as ``name``.

    A name that is already registered, or that contains ``:`` (reserved for the
    ``torchvision:`` / ``timm:`` forms), is refused.
    """
    if not name or ":" in name:
        raise ModelError(f"model name {name!r} must be non-empty and contain no ':'")
    defaults = ModelDefaults(input_size, tuple(mean), tuple(std), interpolation)

    def register(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ModelError(f"a model named {name!r} is already registered")
        doc = description or (factory.__doc__ or "").strip().split("\n", 1)[0]
        _REGISTRY[name] = _Entry(factory, defaults, doc)
        return factory

    return register


def _ensure_builtins() -> None:
    """Import the modules whose decorators register the built-in models."""
    import fkd.models.small  # noqa: F401


def model_names() -> list[str]:
    """The registered (built-in and user-registered) model names, sorted."""
    _ensure_builtins()
    return sorted(_REGISTRY)


def describe_models() -> list[tuple[str, str]]:
    """``(name, one-line description)`` of every registered model."""
    _ensure_builtins()
    return [(name, _REGISTRY[name].description) for name in sorted(_REGISTRY)]


def _torchvision_names() -> list[str]:
    from torchvision import models

    return list(models.list_models(module=models))


def _timm_module() -> Any:
    try:
        import timm
    except ImportError as exc:
        raise ModelError("timm: models need the timm package: pip install timm") from exc
    return timm


def _unknown(arch: str) -> ModelError:
    builtins = model_names()
    candidates = [*builtins, *_torchvision_names()]
    close = difflib.get_close_matches(arch.removeprefix(_TORCHVISION_PREFIX), candidates, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ModelError(
        f"unknown model {arch!r}{hint}; built-in models are {', '.join(builtins)}; any "
        "torchvision classification model (e.g. resnet18) and timm:<name> also work"
    )


def _check_sizes(arch: str, num_classes: int, in_channels: int) -> None:
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if not (isinstance(value, int) and value >= 1):
            raise ModelError(f"model {arch!r}: {name} must be an integer >= 1, got {value!r}")


def build_model(arch: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """A freshly initialised ``arch`` with ``num_classes`` outputs (see the module docstring)."""
    _ensure_builtins()
    arch = arch.strip()
    _check_sizes(arch, num_classes, in_channels)
    if arch in _REGISTRY:
        return _REGISTRY[arch].factory(num_classes, in_channels)
    if arch.startswith(_TIMM_PREFIX):
        name = arch[len(_TIMM_PREFIX) :]
        timm = _timm_module()
        try:
            model: nn.Module = timm.create_model(
                name, pretrained=False, num_classes=num_classes, in_chans=in_channels
            )
        except RuntimeError as exc:  # timm's "Unknown model"
            raise ModelError(f"timm cannot build {name!r}: {exc}") from exc
        return model
    name = arch.removeprefix(_TORCHVISION_PREFIX)
    if name in _torchvision_names():
        if in_channels != 3:
            raise ModelError(
                f"torchvision model {name!r} takes 3 input channels, not {in_channels}"
            )
        from torchvision import models

        built: nn.Module = models.get_model(name, weights=None, num_classes=num_classes)
        return built
    raise _unknown(arch)


def model_defaults(arch: str) -> ModelDefaults:
    """The input size, mean, std and interpolation ``arch`` is designed for."""
    _ensure_builtins()
    arch = arch.strip()
    if arch in _REGISTRY:
        return _REGISTRY[arch].defaults
    if arch.startswith(_TIMM_PREFIX):
        return _timm_defaults(arch[len(_TIMM_PREFIX) :])
    if arch.removeprefix(_TORCHVISION_PREFIX) in _torchvision_names():
        return ModelDefaults()
    raise _unknown(arch)


def _timm_defaults(name: str) -> ModelDefaults:
    timm = _timm_module()
    try:
        cfg = timm.get_pretrained_cfg(name)
    except Exception:  # unknown to timm's config table: ImageNet defaults
        cfg = None
    if cfg is None:
        return ModelDefaults()
    data = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    size = data.get("input_size", (3, 224, 224))
    interpolation = str(data.get("interpolation", "bilinear"))
    return ModelDefaults(
        input_size=int(size[-1]),
        mean=tuple(data.get("mean", IMAGENET_MEAN)),
        std=tuple(data.get("std", IMAGENET_STD)),
        interpolation=interpolation if interpolation in ("bilinear", "bicubic") else "bilinear",
    )
