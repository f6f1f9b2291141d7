"""The model registry: one resolver of model names, for students and teachers alike.

A model name is one of

- a registered name (``model_names()``): the small CNNs of ``fkd.models.small`` for
  28-32 px images, ``efficientnet_lite0``, and whatever :func:`register_model` added;
- a torchvision classification model, ``torchvision:resnet18`` or just ``resnet18``;
- ``timm:<name>`` when timm is installed (a pretrained tag such as ``.a1_in1k`` is fine).

:func:`resolve_model_name` turns a name into a :class:`ModelName`, which builds the
architecture (:meth:`ModelName.build`) and knows the preprocessing it is designed for
(:meth:`ModelName.defaults`): a registered model's own, a torchvision model's
``DEFAULT`` weights transforms, a timm model's ``pretrained_cfg`` (bicubic where it
says nothing, as in timm). ``fkd train`` builds students with :func:`build_model` and
takes :func:`model_defaults` unless told otherwise, and ``fkd.teachers`` resolves the
``torchvision:`` and ``timm:`` teacher specs and ``fkd:<arch>`` checkpoints through the
same functions, so a student and a teacher of one name preprocess the same way.

Every model maps normalised ``[B, in_channels, S, S]`` images to ``[B, num_classes]``
logits.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

from torch import nn

import fkd.models.efficientnet_lite as lite
from fkd.models.errors import ModelError
from fkd.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD, ModelDefaults
from fkd.models.small import (
    SMALL_INPUT_SIZE,
    SMALL_MEAN,
    SMALL_STD,
    cnn_4_8_16,
    cnn_8_16_32,
    cnn_teacher,
)
from fkd.models.timm_models import build_timm, check_timm_name, timm_preprocessing
from fkd.models.torchvision_models import (
    build_torchvision,
    check_torchvision_arch,
    torchvision_classifiers,
    torchvision_default_weights,
    torchvision_preprocessing,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ModelDefaults",
    "ModelError",
    "ModelName",
    "build_model",
    "describe_models",
    "model_defaults",
    "model_names",
    "register_model",
    "resolve_model_name",
]

ModelFactory = Callable[[int, int], nn.Module]
"""``factory(num_classes, in_channels)`` returns a freshly initialised module."""

Source = Literal["registered", "torchvision", "timm"]


@dataclass(frozen=True)
class _Entry:
    factory: ModelFactory
    defaults: ModelDefaults
    description: str


_REGISTRY: dict[str, _Entry] = {}


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


def model_names() -> list[str]:
    """The registered (built-in and user-registered) model names, sorted."""
    return sorted(_REGISTRY)


def describe_models() -> list[tuple[str, str]]:
    """``(name, one-line description)`` of every registered model."""
    return [(name, _REGISTRY[name].description) for name in sorted(_REGISTRY)]


@dataclass(frozen=True)
class ModelName:
    """A resolved model name: where the architecture comes from, and its name there."""

    source: Source
    name: str

    @property
    def spec(self) -> str:
        """The canonical spelling: ``cnn_teacher``, ``torchvision:resnet18``, ``timm:...``."""
        return self.name if self.source == "registered" else f"{self.source}:{self.name}"

    def build(self, num_classes: int | None = None, in_channels: int = 3) -> nn.Module:
        """A freshly initialised model; ``num_classes=None``: the architecture's default
        (torchvision and timm; a registered model needs a class count)."""
        if self.source == "torchvision":
            return build_torchvision(self.name, num_classes, in_channels)
        if self.source == "timm":
            return build_timm(self.name, num_classes, in_channels)
        if num_classes is None:
            raise ModelError(f"model {self.name!r} needs a class count to be built")
        return _REGISTRY[self.name].factory(num_classes, in_channels)

    def defaults(self) -> ModelDefaults:
        """The input size, mean, std and interpolation the architecture is designed for."""
        if self.source == "torchvision":
            return torchvision_preprocessing(torchvision_default_weights(self.name))
        if self.source == "timm":
            return timm_preprocessing(self.name)
        return _REGISTRY[self.name].defaults


def _unknown(arch: str) -> ModelError:
    builtins = model_names()
    candidates = [*builtins, *torchvision_classifiers()]
    close = difflib.get_close_matches(arch, candidates, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ModelError(
        f"unknown model {arch!r}{hint}; built-in models are {', '.join(builtins)}; any "
        "torchvision classification model (e.g. resnet18) and timm:<name> also work"
    )


def resolve_model_name(arch: str) -> ModelName:
    """The :class:`ModelName` that ``arch`` names (see the module docstring for the forms)."""
    arch = arch.strip()
    if arch in _REGISTRY:
        return ModelName("registered", arch)
    scheme, colon, name = arch.partition(":")
    if colon and scheme == "timm":
        return ModelName("timm", check_timm_name(name))
    if colon and scheme == "torchvision":
        return ModelName("torchvision", check_torchvision_arch(name))
    if not colon and arch.lower() in torchvision_classifiers():
        return ModelName("torchvision", arch.lower())
    raise _unknown(arch)


def _check_sizes(arch: str, num_classes: int, in_channels: int) -> None:
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if not (isinstance(value, int) and value >= 1):
            raise ModelError(f"model {arch!r}: {name} must be an integer >= 1, got {value!r}")


def build_model(arch: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """A freshly initialised ``arch`` with ``num_classes`` outputs (see the module docstring)."""
    _check_sizes(arch.strip(), num_classes, in_channels)
    return resolve_model_name(arch).build(num_classes, in_channels)


def model_defaults(arch: str) -> ModelDefaults:
    """The input size, mean, std and interpolation ``arch`` is designed for."""
    return resolve_model_name(arch).defaults()


# --------------------------------------------------------------------------- built-ins


def _efficientnet_lite0(num_classes: int, in_channels: int = 3) -> nn.Module:
    """EfficientNet-Lite0 (~4.7M at 1000 classes), randomly initialised."""
    if in_channels != 3:
        raise ModelError(f"efficientnet_lite0 takes 3 input channels, not {in_channels}")
    return lite.EfficientNetLite0(num_classes)


def _register_builtins() -> None:
    for name, factory in (
        ("cnn_teacher", cnn_teacher),
        ("cnn_4_8_16", cnn_4_8_16),
        ("cnn_8_16_32", cnn_8_16_32),
    ):
        register_model(name, input_size=SMALL_INPUT_SIZE, mean=SMALL_MEAN, std=SMALL_STD)(factory)
    register_model("efficientnet_lite0", **asdict(lite.PREPROCESSING))(_efficientnet_lite0)


_register_builtins()
