"""Label codecs on the device (torch): encode teacher outputs where they are computed.

The codec registry and its formulas live in ``fkd.storage_formats.label_codecs``
(numpy).  Encoding is the same for every codec once its stored fields are
known: the top-k classes by probability, and their probabilities quantised to
the stored precision (``full`` keeps all C values).  ``encode_torch`` derives
that from the numpy codec's field declarations, so a new codec needs no change
here; ``tests/test_labels_torch.py`` checks both sides agree.
"""

from __future__ import annotations

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
