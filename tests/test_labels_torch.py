"""``fkd.label_codecs_torch.encode_torch`` (on the device) against the numpy codecs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fkd.label_codecs_torch import encode_torch, quantize_values_torch, to_numpy_fields
from fkd.storage_formats import CodecSpec, codec_names, get_codec
from fkd.storage_formats.label_codecs import quantize_values

# (classes, k for the top-K codecs): uint8, uint16 and uint32 class indices.
SIZES = [(10, 3), (1000, 5), (70_000, 2)]


def spec_for(name: str, num_classes: int, k: int, value_dtype: str) -> CodecSpec:
    kept = {"hard": 1, "smoothing": 1, "full": num_classes}.get(name, k)
    return CodecSpec(name, num_classes, k=kept, temperature=1.5, value_dtype=value_dtype)


def cases() -> list[tuple[str, int, int, str]]:
    found = []
    for name in codec_names():
        for value_dtype in ("uint8", "float16"):
            for num_classes, k in SIZES:
                if name == "full" and (value_dtype != "float16" or num_classes > 1000):
                    continue  # full stores float16 only; 70k dense values per crop is no test
                found.append((name, num_classes, k, value_dtype))
    return found


def distinct_probs(rows: int, num_classes: int, seed: int, top: int = 8) -> torch.Tensor:
    """Softmax rows of random logits (float32, as teachers give) without ties among the
    ``top`` largest values of a row: the ones any top-K encoding (K < 8) looks at."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        logits = torch.randn(rows, num_classes, generator=generator) * 3
        probs = torch.softmax(logits, dim=-1)
        largest = probs.topk(min(top, num_classes), dim=-1).values
        if bool((largest[:, :-1] > largest[:, 1:]).all()):
            return probs


def test_every_registered_codec_is_covered() -> None:
    covered = {name for name, _, _, _ in cases()}
    assert covered == set(codec_names()) and len(covered) >= 5


@pytest.mark.parametrize(("name", "num_classes", "k", "value_dtype"), cases())
def test_encode_torch_agrees_with_the_numpy_codec(
    name: str, num_classes: int, k: int, value_dtype: str
) -> None:
    spec = spec_for(name, num_classes, k, value_dtype)
    codec = get_codec(spec)
    rows = 4 if num_classes > 1000 else 64
    probs = distinct_probs(rows, num_classes, seed=num_classes + len(name))
    # A leading [images, crops] shape, as the labeller sees it.
    probs = probs.reshape(2, rows // 2, num_classes)
    encoded = encode_torch(probs, spec)
    host = to_numpy_fields(encoded, spec)
    expected = codec.encode(probs.numpy())
    assert host.keys() == expected.keys() == {f.name for f in codec.fields()}
    for field in codec.fields():
        got, want = host[field.name], expected[field.name]
        assert got.dtype == want.dtype == field.dtype, field.name
        assert got.shape == want.shape == (2, rows // 2, *field.shape), field.name
        np.testing.assert_array_equal(got, want, err_msg=field.name)
    # The device tensors already hold the stored values (index dtypes widen for torch).
    for name_, tensor in encoded.items():
        assert tensor.device == probs.device
        np.testing.assert_array_equal(tensor.numpy().astype(expected[name_].dtype), expected[name_])
    # And they decode to distributions.
    np.testing.assert_allclose(codec.decode(host).sum(-1), 1.0, atol=1e-5)


def test_index_is_the_top_k_in_order_and_values_their_quantised_probabilities() -> None:
    spec = CodecSpec("marginal_smoothing", 1000, k=5)
    probs = distinct_probs(8, 1000, seed=3)
    host = to_numpy_fields(encode_torch(probs, spec), spec)
    order = np.argsort(-probs.numpy(), axis=-1)[:, :5]
    np.testing.assert_array_equal(host["index"], order)
    kept = np.take_along_axis(probs.numpy(), order, axis=-1)
    np.testing.assert_array_equal(host["value"], np.clip(np.rint(kept * 255), 1, 255))


@pytest.mark.parametrize("value_dtype", ["uint8", "float16"])
def test_value_quantisation_agrees_at_the_edges(value_dtype: str) -> None:
    """0, 1, out-of-range values and exact uint8 half steps round the same on both sides."""
    halves = (np.arange(0, 255, dtype=np.float32) + 0.5) / np.float32(255.0)
    edges = np.array([0.0, 1e-9, 1.0 / 510, 1.0, 1.5, -0.25, 0.999999], dtype=np.float32)
    values = np.concatenate([edges, halves, np.linspace(0, 1, 1001, dtype=np.float32)])
    got = quantize_values_torch(torch.from_numpy(values), value_dtype).numpy()
    np.testing.assert_array_equal(got, quantize_values(values, value_dtype))
