"""Label codecs on the device (torch): labels encoded where the teacher computes them,
and dense labels rebuilt where the student trains (``encode_torch``, ``decode_torch``).

The codec registry and its formulas live in ``fkd.storage_formats.label_codecs``
(numpy).  Encoding is the same for every codec once its stored fields are
known: the top-k classes by probability, and their probabilities quantised to
the stored precision (``full`` keeps all C values).  ``encode_torch`` derives
that from the numpy codec's field declarations, so a new codec needs no change
here; ``tests/test_labels_torch.py`` checks both sides agree.  Each decoder is the
torch twin of its numpy codec's ``decode`` (``tests/test_decode_torch.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from fkd.storage_formats import CodecSpec, get_codec
from fkd.storage_formats.label_codecs import UINT8_VALUE_SCALE, LabelField


def _kept_count(fields: tuple[LabelField, ...], num_classes: int) -> int:
    index = [f for f in fields if f.name == "index"]
    if index:
        return int(np.prod(index[0].shape)) if index[0].shape else 1
    return num_classes


def quantize_values_torch(values: torch.Tensor, value_dtype: str) -> torch.Tensor:
    values = values.float().clamp(0.0, 1.0)
    if value_dtype == "float16":
        return values.half()
    return torch.round(values * UINT8_VALUE_SCALE).clamp(1, 255).to(torch.uint8)


def encode_torch(probs: torch.Tensor, spec: CodecSpec) -> dict[str, torch.Tensor]:
    """Encode ``probs[..., C]`` on its device into the codec's stored fields.

    Returns tensors with the dtypes and shapes of ``get_codec(spec).fields()``.
    """
    fields = get_codec(spec).fields()
    k = _kept_count(fields, spec.num_classes)
    if k == spec.num_classes and not any(f.name == "index" for f in fields):
        values, index = probs, None
    else:
        values, index = torch.topk(probs.float(), k, dim=-1, largest=True, sorted=True)
    out: dict[str, torch.Tensor] = {}
    for field in fields:
        if field.name == "index":
            assert index is not None
            stored = index if field.shape else index[..., 0]
            out["index"] = stored.to(_torch_dtype(field.dtype))
        elif field.name == "value":
            stored = values if field.shape else values[..., 0]
            out["value"] = quantize_values_torch(stored, spec.value_dtype)
        else:
            raise ValueError(f"codec {spec.name!r} has a field {field.name!r} fkd cannot encode")
    return out


def _torch_dtype(dtype: np.dtype[Any]) -> torch.dtype:
    # torch has uint8 natively; wider unsigned types are stored from int32/int64 on the host.
    return {1: torch.uint8, 2: torch.int32, 4: torch.int64}[dtype.itemsize]


def to_numpy_fields(encoded: dict[str, torch.Tensor], spec: CodecSpec) -> dict[str, Any]:
    """Move encoded fields to the host with their exact stored dtypes."""
    dtypes = {f.name: f.dtype for f in get_codec(spec).fields()}
    return {name: t.cpu().numpy().astype(dtypes[name]) for name, t in encoded.items()}


# Decoding on the training device ----------------------------------------------------

MaybeTensor = torch.Tensor | None
TorchDecoder = Callable[[MaybeTensor, MaybeTensor, CodecSpec], torch.Tensor]
_TORCH_DECODERS: dict[str, TorchDecoder] = {}


def register_torch_decoder(name: str) -> Callable[[TorchDecoder], TorchDecoder]:
    """Register the torch twin of the numpy codec ``name`` (the same formula, vectorised)."""

    def register(decoder: TorchDecoder) -> TorchDecoder:
        if name in _TORCH_DECODERS:
            raise ValueError(f"a torch decoder for {name!r} is already registered")
        _TORCH_DECODERS[name] = decoder
        return decoder

    return register


def decode_torch(
    encoded: Mapping[str, Any], spec: CodecSpec, device: torch.device | str | None = None
) -> torch.Tensor:
    """Dense float32 soft labels ``[..., C]`` rebuilt on ``device`` from stored fields.

    ``encoded`` maps field names to numpy arrays or tensors as the store holds
    them; the result equals ``get_codec(spec).decode`` (tests/test_decode_torch.py).
    """
    try:
        decoder = _TORCH_DECODERS[spec.name]
    except KeyError:
        raise ValueError(
            f"no torch decoder for codec {spec.name!r}; codecs with one are "
            f"{sorted(_TORCH_DECODERS)}"
        ) from None
    tensors = {
        name: torch.as_tensor(
            np.asarray(value) if not isinstance(value, torch.Tensor) else value, device=device
        )
        for name, value in encoded.items()
    }
    index = tensors.get("index")
    if index is not None:
        index = index.long()
        if index.numel() and int(index.max()) >= spec.num_classes:
            raise ValueError(f"label index {int(index.max())} >= num_classes {spec.num_classes}")
    value = tensors.get("value")
    if value is not None:
        value = dequantize_values_torch(value, spec.value_dtype)
    return decoder(index, value, spec)


def dequantize_values_torch(stored: torch.Tensor, value_dtype: str) -> torch.Tensor:
    if value_dtype == "uint8":
        return stored.float() / UINT8_VALUE_SCALE
    return stored.float().clamp(0.0, 1.0)


def normalise_rows_torch(dense: torch.Tensor) -> torch.Tensor:
    total = dense.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(dense, 1.0 / dense.shape[-1])
    return torch.where(total > 0, dense / total.clamp_min(1e-30), uniform)


def _scatter(
    index: torch.Tensor, values: torch.Tensor, fill: torch.Tensor, num_classes: int
) -> torch.Tensor:
    dense = fill[..., None].expand(*index.shape[:-1], num_classes).clone()
    return dense.scatter_(-1, index, values)


def _spread(
    index: torch.Tensor, value: torch.Tensor, fill: torch.Tensor, spec: CodecSpec
) -> torch.Tensor:
    """Rows holding ``value`` at ``index`` and ``fill`` elsewhere, normalised to sum to one."""
    return normalise_rows_torch(_scatter(index, value, fill, spec.num_classes))


def _no_fill(kept: torch.Tensor) -> torch.Tensor:
    """A zero fill for each row of ``kept`` (the classes not kept get nothing)."""
    return torch.zeros(kept.shape[:-1], device=kept.device)


@register_torch_decoder("hard")
def _decode_hard(index: MaybeTensor, value: MaybeTensor, spec: CodecSpec) -> torch.Tensor:
    assert index is not None
    kept = index[..., None]
    return _scatter(
        kept, torch.ones(kept.shape, device=kept.device), _no_fill(kept), spec.num_classes
    )


@register_torch_decoder("smoothing")
def _decode_smoothing(index: MaybeTensor, value: MaybeTensor, spec: CodecSpec) -> torch.Tensor:
    assert index is not None and value is not None
    fill = (1.0 - value).clamp_min(0.0) / max(spec.num_classes - 1, 1)
    return _spread(index[..., None], value[..., None], fill, spec)


@register_torch_decoder("marginal_smoothing")
def _decode_marginal_smoothing(
    index: MaybeTensor, value: MaybeTensor, spec: CodecSpec
) -> torch.Tensor:
    assert index is not None and value is not None
    others = spec.num_classes - spec.k
    fill = (1.0 - value.sum(dim=-1)).clamp_min(0.0) / others if others > 0 else _no_fill(value)
    return _spread(index, value, fill, spec)


@register_torch_decoder("marginal_renorm")
def _decode_marginal_renorm(
    index: MaybeTensor, value: MaybeTensor, spec: CodecSpec
) -> torch.Tensor:
    assert index is not None and value is not None
    all_zero = value.sum(dim=-1, keepdim=True) <= 0
    value = torch.where(all_zero, torch.ones_like(value), value)
    return _spread(index, value, _no_fill(value), spec)


@register_torch_decoder("full")
def _decode_full(index: MaybeTensor, value: MaybeTensor, spec: CodecSpec) -> torch.Tensor:
    assert value is not None
    return normalise_rows_torch(value)
