"""The label codec registry: how a teacher's softmax becomes a few stored numbers.

Each codec is one class with ``encode`` (dense probabilities to stored arrays)
and ``decode`` (stored arrays to dense probabilities), vectorised over any
leading shape, numpy only.  Codecs are registered by name (``codec_registry``);
an unknown name fails with the list of known ones.

The formulas (C classes, K kept, p the teacher distribution, v the stored
values, S = sum of v):

- ``hard``: stores argmax(p); decodes to a one-hot row.
- ``smoothing``: stores argmax(p) and its probability v; the other C-1 classes
  get (1 - v) / (C - 1) each.
- ``marginal_smoothing``: stores the top-K indices and probabilities; the other
  C-K classes get max(1 - S, 0) / (C - K) each (FKD's "marginal smoothing").
- ``marginal_renorm``: stores the top-K indices and probabilities; decodes to
  v / S on the kept classes and 0 elsewhere (FKD's "marginal re-norm").
- ``full``: stores all C probabilities (a reference); decodes to v / S.

Every decoded row is divided by its sum as the last step, so it sums to one
within float32 precision even when narrow stored values round the other way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from fkd.storage_formats.codec_registry import codec_class, register_codec
from fkd.storage_formats.codec_registry import codec_names as codec_names  # re-exported (old path)
from fkd.storage_formats.spec import CodecSpec

UINT8_VALUE_SCALE = 255.0


@dataclass(frozen=True)
class LabelField:
    """One stored array of a codec: its name, dtype and per-crop trailing shape."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]


class LabelCodec(ABC):
    """A label codec: ``encode`` and ``decode`` between dense rows and stored arrays."""

    name: ClassVar[str]

    def __init__(self, spec: CodecSpec) -> None:
        if spec.name != self.name:
            raise ValueError(f"codec {self.name!r} was given a spec for {spec.name!r}")
        self.spec = spec

    @classmethod  # noqa: B027 (an optional hook; the default accepts any k)
    def check_spec(cls, spec: CodecSpec) -> None:
        """Raise ``ValueError`` if ``spec`` is not valid for this codec."""

    @classmethod
    def k_for(cls, topk: int, num_classes: int) -> int:
        """The K this codec stores when asked for ``topk`` (codecs without a choice override)."""
        return topk

    @abstractmethod
    def fields(self) -> tuple[LabelField, ...]:
        """The stored arrays, in a fixed order."""

    @abstractmethod
    def encode(self, probs: NDArray[Any]) -> dict[str, NDArray[Any]]:
        """Dense probabilities ``[..., C]`` to stored arrays ``{field: [..., *shape]}``."""

    @abstractmethod
    def decode(self, arrays: Mapping[str, NDArray[Any]]) -> NDArray[np.float32]:
        """Stored arrays back to dense float32 probabilities ``[..., C]``."""

    # Shared helpers -------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    def _index_field(self, shape: tuple[int, ...]) -> LabelField:
        return LabelField("index", self.spec.index_dtype, shape)

    def _value_field(self, shape: tuple[int, ...]) -> LabelField:
        return LabelField("value", np.dtype(self.spec.value_dtype), shape)

    def _store_values(self, values: NDArray[Any]) -> NDArray[Any]:
        return quantize_values(values, self.spec.value_dtype)

    def _load_values(self, stored: NDArray[Any]) -> NDArray[np.float32]:
        return dequantize_values(stored, self.spec.value_dtype)

    def _checked_index(self, index: NDArray[Any]) -> NDArray[np.intp]:
        index = np.asarray(index)
        if index.size and int(index.max()) >= self.num_classes:
            raise ValueError(
                f"label index {int(index.max())} is out of range for num_classes={self.num_classes}"
            )
        return index.astype(np.intp)

    def _check_probs(self, probs: NDArray[Any]) -> NDArray[np.float32]:
        probs = np.asarray(probs, dtype=np.float32)
        if probs.ndim < 1 or probs.shape[-1] != self.num_classes:
            raise ValueError(
                f"{self.name}: expected probabilities of shape [..., {self.num_classes}], "
                f"got {probs.shape}"
            )
        return probs


def get_codec(spec: CodecSpec) -> LabelCodec:
    """The codec instance for ``spec``."""
    codec: LabelCodec = codec_class(spec.name)(spec)
    return codec


def codec_spec(
    name: str, num_classes: int, topk: int, temperature: float = 1.0, value_dtype: str = "uint8"
) -> CodecSpec:
    """The spec for ``--label-type name --topk topk``: hard and smoothing keep 1, full keeps C."""
    k = codec_class(name).k_for(topk, num_classes)
    return CodecSpec(name, num_classes, k=k, temperature=temperature, value_dtype=value_dtype)


# Value precision ------------------------------------------------------------


def quantize_values(values: NDArray[Any], value_dtype: str) -> NDArray[Any]:
    """Probabilities in [0, 1] to their stored form: float16, or uint8 as max(1, round(255 p)).

    uint8 values are kept classes, so they never round to 0: a kept class must
    not decode below the classes that were not kept.
    """
    values = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    if value_dtype == "float16":
        return values.astype(np.float16)
    if value_dtype == "uint8":
        return np.clip(np.rint(values * UINT8_VALUE_SCALE), 1, 255).astype(np.uint8)
    raise ValueError(f"unknown value_dtype {value_dtype!r}; known are ['float16', 'uint8']")


def dequantize_values(stored: NDArray[Any], value_dtype: str) -> NDArray[np.float32]:
    stored = np.asarray(stored)
    if value_dtype == "uint8":
        return stored.astype(np.float32) / np.float32(UINT8_VALUE_SCALE)
    values = stored.astype(np.float32)
    if not np.isfinite(values).all():
        raise ValueError("stored label values contain NaN or infinity")
    return np.clip(values, 0.0, 1.0)


# Vectorised building blocks -------------------------------------------------


def top_k(probs: NDArray[np.float32], k: int) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    """Indices and values of the k largest entries along the last axis, largest first.

    Ties are broken by class index (lower first), also at the k-th place, so the
    result is a function of the values alone.  Vectorised: one partition for the
    k-th largest value, a mask, and a sort of the k survivors only.
    """
    num_classes = probs.shape[-1]
    lead = probs.shape[:-1]
    if k < num_classes:
        kth = -np.partition(-probs, k - 1, axis=-1)[..., k - 1 : k]
        above = probs > kth
        tied = probs == kth
        room = k - above.sum(axis=-1, keepdims=True)
        keep = above | (tied & (np.cumsum(tied, axis=-1) <= room))
        candidates = np.nonzero(keep)[-1].reshape((*lead, k))
    else:
        candidates = np.broadcast_to(np.arange(num_classes), probs.shape).copy()
    values = np.take_along_axis(probs, candidates, axis=-1)
    order = np.argsort(-values, axis=-1, kind="stable")
    return (
        np.take_along_axis(candidates, order, axis=-1),
        np.take_along_axis(values, order, axis=-1),
    )


def scatter_rows(
    index: NDArray[np.intp],
    values: NDArray[np.float32],
    fill: NDArray[np.float32],
    num_classes: int,
) -> NDArray[np.float32]:
    """Dense rows equal to ``fill`` (per row) with ``values`` written at ``index``."""
    lead = index.shape[:-1]
    dense = np.empty((*lead, num_classes), dtype=np.float32)
    dense[...] = fill[..., None]
    np.put_along_axis(dense, index, values, axis=-1)
    return dense


def normalise_rows(dense: NDArray[np.float32]) -> NDArray[np.float32]:
    """Divide each row by its sum; a row summing to zero becomes uniform."""
    total = dense.sum(axis=-1, keepdims=True)
    uniform = np.float32(1.0 / dense.shape[-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total > 0, dense / total, uniform)
    return out.astype(np.float32)


# The codecs ---------------------------------------------------------------


def _expect_k(spec: CodecSpec, expected: int, what: str) -> None:
    if spec.k != expected:
        raise ValueError(f"codec {spec.name!r} requires k={what}, got k={spec.k}")


class _TopOneCodec(LabelCodec):
    """Shared K rule of the codecs that keep the top-1 class: K is 1 whatever ``--topk`` says."""

    @classmethod
    def k_for(cls, topk: int, num_classes: int) -> int:
        return 1

    @classmethod
    def check_spec(cls, spec: CodecSpec) -> None:
        _expect_k(spec, 1, "1")


@register_codec
class HardCodec(_TopOneCodec):
    """The teacher's top-1 class only (hardening)."""

    name = "hard"

    def fields(self) -> tuple[LabelField, ...]:
        return (self._index_field(()),)

    def encode(self, probs: NDArray[Any]) -> dict[str, NDArray[Any]]:
        probs = self._check_probs(probs)
        return {"index": np.argmax(probs, axis=-1).astype(self.spec.index_dtype)}

    def decode(self, arrays: Mapping[str, NDArray[Any]]) -> NDArray[np.float32]:
        index = self._checked_index(arrays["index"])[..., None]
        fill = np.zeros(index.shape[:-1], dtype=np.float32)
        ones = np.ones(index.shape, dtype=np.float32)
        return scatter_rows(index, ones, fill, self.num_classes)


@register_codec
class SmoothingCodec(_TopOneCodec):
    """Top-1 class and its probability; the rest spread evenly over the other C-1."""

    name = "smoothing"

    def fields(self) -> tuple[LabelField, ...]:
        return (self._index_field(()), self._value_field(()))

    def encode(self, probs: NDArray[Any]) -> dict[str, NDArray[Any]]:
        index, values = top_k(self._check_probs(probs), 1)
        return {
            "index": index[..., 0].astype(self.spec.index_dtype),
            "value": self._store_values(values[..., 0]),
        }

    def decode(self, arrays: Mapping[str, NDArray[Any]]) -> NDArray[np.float32]:
        index = self._checked_index(arrays["index"])[..., None]
        values = self._load_values(arrays["value"])[..., None]
        rest = max(self.num_classes - 1, 1)
        fill = np.maximum(1.0 - values[..., 0], 0.0) / np.float32(rest)
        return normalise_rows(scatter_rows(index, values, fill, self.num_classes))


class _TopKCodec(LabelCodec):
    """Shared storage of the top-K codecs: K indices and K probabilities."""

    def fields(self) -> tuple[LabelField, ...]:
        k = self.spec.k
        return (self._index_field((k,)), self._value_field((k,)))

    def encode(self, probs: NDArray[Any]) -> dict[str, NDArray[Any]]:
        index, values = top_k(self._check_probs(probs), self.spec.k)
        return {
            "index": index.astype(self.spec.index_dtype),
            "value": self._store_values(values),
        }

    def _kept(self, arrays: Mapping[str, NDArray[Any]]) -> tuple[NDArray[np.intp], NDArray[Any]]:
        return self._checked_index(arrays["index"]), self._load_values(arrays["value"])


@register_codec
class MarginalSmoothingCodec(_TopKCodec):
    """Top-K kept; the remaining mass 1 - S spread evenly over the other C-K classes."""

    name = "marginal_smoothing"

    def decode(self, arrays: Mapping[str, NDArray[Any]]) -> NDArray[np.float32]:
        index, values = self._kept(arrays)
        others = self.num_classes - self.spec.k
        if others > 0:
            fill = np.maximum(1.0 - values.sum(axis=-1), 0.0) / np.float32(others)
        else:
            fill = np.zeros(values.shape[:-1], dtype=np.float32)
        return normalise_rows(scatter_rows(index, values, fill, self.num_classes))


@register_codec
class MarginalRenormCodec(_TopKCodec):
    """Top-K kept and rescaled to sum to one; every other class gets zero."""

    name = "marginal_renorm"

    def decode(self, arrays: Mapping[str, NDArray[Any]]) -> NDArray[np.float32]:
        index, values = self._kept(arrays)
        fill = np.zeros(values.shape[:-1], dtype=np.float32)
        kept_only = scatter_rows(index, values, fill, self.num_classes)
        all_zero = values.sum(axis=-1, keepdims=True) <= 0
        if all_zero.any():
            # Every kept value quantised to 0: spread evenly over the kept classes.
            ones = scatter_rows(index, np.ones_like(values), fill, self.num_classes)
            kept_only = np.where(all_zero, ones, kept_only)
        return normalise_rows(kept_only)


@register_codec
class FullCodec(LabelCodec):
    """All C probabilities (a reference for fidelity measurements; large)."""

    name = "full"

    @classmethod
    def k_for(cls, topk: int, num_classes: int) -> int:
        return num_classes

    @classmethod
    def check_spec(cls, spec: CodecSpec) -> None:
        _expect_k(spec, spec.num_classes, "num_classes")
        if spec.value_dtype != "float16":
            raise ValueError("codec 'full' is a reference: it stores float16 values only")

    def fields(self) -> tuple[LabelField, ...]:
        return (self._value_field((self.num_classes,)),)

    def encode(self, probs: NDArray[Any]) -> dict[str, NDArray[Any]]:
        return {"value": self._store_values(self._check_probs(probs))}

    def decode(self, arrays: Mapping[str, NDArray[Any]]) -> NDArray[np.float32]:
        return normalise_rows(self._load_values(arrays["value"]))
