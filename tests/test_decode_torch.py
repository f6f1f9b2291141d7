"""``fkd.label_codecs_torch.decode_torch`` agrees with the numpy codecs of the store format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fkd.label_codecs_torch import decode_torch
from fkd.storage_formats import CodecSpec, codec_names, get_codec


def specs() -> list[CodecSpec]:
    out = []
    for name in codec_names():
        for value_dtype in ("uint8", "float16"):
            if name == "full" and value_dtype == "uint8":
                continue
            k = {"hard": 1, "smoothing": 1, "full": 300}.get(name, 7)
            out.append(CodecSpec(name, 300, k=k, value_dtype=value_dtype))
    return out


@pytest.mark.parametrize("spec", specs(), ids=lambda s: f"{s.name}-{s.value_dtype}")
def test_decode_torch_equals_the_numpy_codec(spec) -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(300, 0.05), size=(4, 6)).astype(np.float32)
    encoded = get_codec(spec).encode(probs)
    expected = get_codec(spec).decode(encoded)
    got = decode_torch(encoded, spec, device="cpu")
    assert got.dtype == torch.float32 and got.shape == (4, 6, 300)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(got.sum(-1).numpy(), 1.0, atol=1e-5)


def test_every_registered_codec_has_a_torch_decoder() -> None:
    for spec in specs():
        decode_torch(get_codec(spec).encode(np.full((1, 300), 1 / 300, np.float32)), spec)


def test_decode_torch_refuses_out_of_range_indices() -> None:
    spec = CodecSpec("marginal_smoothing", 10, k=2)
    with pytest.raises(ValueError, match="label index 10 >= num_classes 10"):
        decode_torch({"index": np.array([[1, 10]], np.uint8),
                      "value": np.array([[9, 9]], np.uint8)}, spec)
