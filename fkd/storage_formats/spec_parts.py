"""The parts of a store's spec: its label codec, its crops and its teacher.

Frozen dataclasses, each validating itself at construction and round-tripping through
plain JSON (``to_dict`` / ``from_dict``); ``fkd.storage_formats.spec.StoreSpec`` holds
one of each.  Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Self

import numpy as np

from fkd.exceptions import UserInputError
from fkd.storage_formats.codec_registry import codec_class

VALUE_DTYPES = ("float16", "uint8")
BOX_SAMPLERS = ("fkd-rrc-v1", "stored")
INTERPOLATIONS = ("bilinear", "bicubic")
# How crops are cut and resized (``fkd.crops.RESAMPLING_REGISTRY`` implements each name).
RESAMPLINGS = ("uint8-bilinear", "roi-align-bilinear", "float-bilinear", "float-bicubic")

# Caps on a part of the spec (the store-wide ones are in ``spec``).
MAX_CROPS_PER_IMAGE = 65_536
MAX_CLASSES = 2**24


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserInputError(message)


def _check_unknown_keys(cls: type, data: Mapping[str, Any]) -> None:
    known = {f.name for f in fields(cls) if f.compare}  # not the bookkeeping fields
    unknown = sorted(set(data) - known)
    _require(not unknown, f"{cls.__name__}: unknown keys {unknown}; known keys are {sorted(known)}")


def _pair(value: Sequence[float], name: str) -> tuple[float, float]:
    _require(len(value) == 2, f"{name} must be a pair (low, high), got {list(value)}")
    low, high = float(value[0]), float(value[1])
    _require(math.isfinite(low) and math.isfinite(high), f"{name} must be finite, got {value}")
    _require(low <= high, f"{name} must satisfy low <= high, got ({low}, {high})")
    return low, high


def fields_as_json(instance: Any) -> dict[str, Any]:
    """A dataclass's fields as plain JSON values, in field order; tuples become lists."""
    return {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in asdict(instance).items()
    }


@dataclass(frozen=True)
class _FlatSpec:
    """A spec of plain fields: ``to_dict`` gives JSON (tuples as lists), ``from_dict``
    refuses unknown keys and validates through the constructor."""

    def to_dict(self) -> dict[str, Any]:
        return fields_as_json(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        _check_unknown_keys(cls, data)
        return cls(**data)


def index_dtype_for(num_classes: int) -> np.dtype[Any]:
    """The narrowest unsigned integer dtype that holds every class index."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if num_classes - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"num_classes={num_classes} is over the cap of {MAX_CLASSES}")


@dataclass(frozen=True)
class CodecSpec(_FlatSpec):
    """How a teacher distribution is compressed into a per-crop label.

    ``name`` is a registered label codec (see ``codec_registry.codec_names()``);
    ``k`` is the number of classes kept (1 for ``hard`` and ``smoothing``, C for
    ``full``); ``temperature`` is the softmax temperature the teacher used;
    ``value_dtype`` is the stored precision of probabilities.
    """

    name: str
    num_classes: int
    k: int = 1
    temperature: float = 1.0
    value_dtype: str = "uint8"

    def __post_init__(self) -> None:
        _require(
            isinstance(self.num_classes, int) and 1 <= self.num_classes <= MAX_CLASSES,
            f"num_classes must be an integer in [1, {MAX_CLASSES}], got {self.num_classes!r}",
        )
        _require(
            isinstance(self.k, int) and 1 <= self.k <= self.num_classes,
            f"k must be an integer in [1, num_classes={self.num_classes}], got {self.k!r}",
        )
        _require(
            math.isfinite(self.temperature) and self.temperature > 0,
            f"temperature must be a positive finite number, got {self.temperature!r}",
        )
        _require(
            self.value_dtype in VALUE_DTYPES,
            f"value_dtype must be one of {list(VALUE_DTYPES)}, got {self.value_dtype!r}",
        )
        codec_class(self.name).check_spec(self)

    @property
    def index_dtype(self) -> np.dtype[Any]:
        return index_dtype_for(self.num_classes)


@dataclass(frozen=True)
class CropSpec(_FlatSpec):
    """How the M crops of every image are sampled.

    ``sampler="fkd-rrc-v1"`` derives every box and flip from (seed, image,
    crop) and the stored image size, at zero bytes; ``sampler="stored"`` keeps
    boxes on a 1/65535 grid and flips as booleans in the store (used for boxes
    that no sampler can reproduce, such as converted FKD files).
    """

    crops_per_image: int = 200
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    flip_prob: float = 0.5
    seed: int = 0
    sampler: str = "fkd-rrc-v1"

    def __post_init__(self) -> None:
        _require(
            isinstance(self.crops_per_image, int)
            and 1 <= self.crops_per_image <= MAX_CROPS_PER_IMAGE,
            f"crops_per_image must be an integer in [1, {MAX_CROPS_PER_IMAGE}], "
            f"got {self.crops_per_image!r}",
        )
        scale = _pair(self.scale, "scale")
        ratio = _pair(self.ratio, "ratio")
        _require(scale[0] > 0 and scale[1] <= 1, f"scale must lie in (0, 1], got {scale}")
        _require(ratio[0] > 0, f"ratio must be positive, got {ratio}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "ratio", ratio)
        _require(0 <= self.flip_prob <= 1, f"flip_prob must lie in [0, 1], got {self.flip_prob}")
        _require(
            isinstance(self.seed, int) and 0 <= self.seed < 2**64,
            f"seed must be an integer in [0, 2**64), got {self.seed!r}",
        )
        _require(
            self.sampler in BOX_SAMPLERS,
            f"sampler must be one of {list(BOX_SAMPLERS)}, got {self.sampler!r}",
        )

    @property
    def boxes_stored(self) -> bool:
        return self.sampler == "stored"


@dataclass(frozen=True)
class TeacherInfo(_FlatSpec):
    """Provenance of the teacher (or ensemble) that produced the labels."""

    spec: str
    input_size: int
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    weights_sha256: str | None = None
    class_names: tuple[str, ...] | None = None
    # The crop path the teacher's crops took (one of RESAMPLINGS); None: not recorded
    # (stores written before fkd recorded it, whose writers chose by device).
    resampling: str | None = None

    def __post_init__(self) -> None:
        _require(bool(self.spec), "teacher spec must be a non-empty string")
        _require(
            self.resampling is None or self.resampling in RESAMPLINGS,
            f"teacher resampling must be one of {list(RESAMPLINGS)}, got {self.resampling!r}",
        )
        _require(
            isinstance(self.input_size, int) and 1 <= self.input_size <= 8192,
            f"teacher input_size must be an integer in [1, 8192], got {self.input_size!r}",
        )
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        _require(len(self.mean) == len(self.std) == 3, "teacher mean and std need 3 values")
        _require(all(s > 0 for s in self.std), f"teacher std must be positive, got {self.std}")
        _require(
            self.interpolation in INTERPOLATIONS,
            f"interpolation must be one of {list(INTERPOLATIONS)}, got {self.interpolation!r}",
        )
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))

    def to_dict(self) -> dict[str, Any]:
        data = fields_as_json(self)
        if self.resampling is None:  # a store written before the key existed stays as it was
            del data["resampling"]
        return data
