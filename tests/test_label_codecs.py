"""Conformance tests that every registered label codec must pass."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fkd.storage_formats import CodecSpec, codec_names, get_codec, register_codec
from fkd.storage_formats.label_codecs import HardCodec, top_k

IMAGENET_21K = 21_843
VALUE_DTYPES = ("float16", "uint8")
# Quantisation step of a stored probability, per value dtype.
VALUE_TOLERANCE = {"float16": 1e-3, "uint8": 1 / 255 + 1e-6}  # uint8 keeps p >= 1/255


def spec_for(name: str, num_classes: int, k: int, value_dtype: str) -> CodecSpec:
    if name in ("hard", "smoothing"):
        k = 1
    elif name == "full":
        k = num_classes
    return CodecSpec(name, num_classes, k=min(k, num_classes), value_dtype=value_dtype)


def kept_values(name: str, probs_top: np.ndarray) -> np.ndarray:
    """What the decoded row holds at the kept classes, per the codec's definition."""
    if name == "hard":
        return np.ones_like(probs_top[..., :1])
    if name in ("marginal_renorm", "full"):
        return probs_top / probs_top.sum(axis=-1, keepdims=True)
    return probs_top


@st.composite
def small_distributions(draw):
    """Any probability vector over up to 40 classes (entries drawn by hypothesis)."""
    num_classes = draw(st.integers(1, 40))
    weights = draw(
        st.lists(
            st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False),
            min_size=num_classes,
            max_size=num_classes,
        )
    )
    probs = np.asarray(weights, dtype=np.float64) + 1e-9
    probs /= probs.sum()
    k = draw(st.integers(1, num_classes))
    return probs[None, :].astype(np.float32), k


@st.composite
def large_distributions(draw):
    """Dirichlet rows with up to 21,843 classes (ImageNet-21K), any leading shape."""
    num_classes = draw(st.integers(2, IMAGENET_21K))
    k = draw(st.integers(1, min(num_classes, 64)))
    alpha = draw(st.floats(0.005, 2.0))
    seed = draw(st.integers(0, 2**32 - 1))
    lead = draw(st.sampled_from([(1,), (3,), (2, 2)]))
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(num_classes, alpha), size=lead).astype(np.float32)
    return probs, k


def value_tolerance(name: str, value_dtype: str, k: int, top_values: np.ndarray) -> float:
    """How far a decoded kept value may be from the codec's ideal, given the stored precision."""
    step = VALUE_TOLERANCE[value_dtype]
    if name in ("marginal_renorm", "full"):
        # Renormalised by S, a sum of k rounded values: the error scales with (k + 1) / S.
        return step * (k + 1) / float(top_values.sum(axis=-1).min()) + 1e-3
    if name in ("smoothing", "marginal_smoothing"):
        # Rows are renormalised only when the k rounded values sum past 1 (or K = C).
        return step * (k + 1) + 1e-3
    return step + 1e-3


@pytest.mark.parametrize("value_dtype", VALUE_DTYPES)
@pytest.mark.parametrize("codec_name", codec_names())
class TestCodecConformance:
    """Every registered codec: valid rows, faithful kept classes, stable round trip."""

    def check(self, name: str, value_dtype: str, probs: np.ndarray, k: int) -> None:
        if name == "full" and value_dtype != "float16":
            with pytest.raises(ValueError, match="float16 values only"):
                spec_for(name, probs.shape[-1], k, value_dtype)
            return
        num_classes = probs.shape[-1]
        spec = spec_for(name, num_classes, k, value_dtype)
        codec = get_codec(spec)
        encoded = codec.encode(probs)
        self.check_fields(codec, encoded, probs.shape[:-1])
        dense = codec.decode(encoded)
        self.check_valid_rows(dense, probs.shape)
        top_index, top_values = top_k(probs, spec.k)
        tolerance = value_tolerance(name, value_dtype, spec.k, top_values)
        self.check_kept_classes(name, top_index, top_values, dense, tolerance)
        self.check_round_trip(codec, dense, tolerance)

    def check_fields(self, codec, encoded, lead) -> None:
        assert set(encoded) == {f.name for f in codec.fields()}
        for field in codec.fields():
            assert encoded[field.name].dtype == field.dtype
            assert encoded[field.name].shape == (*lead, *field.shape)
            if field.name == "index":
                assert int(encoded["index"].max()) < codec.num_classes

    def check_valid_rows(self, dense, shape) -> None:
        assert dense.shape == shape and dense.dtype == np.float32
        assert np.isfinite(dense).all() and (dense >= 0).all()
        np.testing.assert_allclose(dense.sum(axis=-1), 1.0, atol=1e-3)

    def check_kept_classes(self, name, top_index, top_values, dense, tolerance) -> None:
        """The decoded top-K are the input's top-K, in order, with the codec's values."""
        expected = kept_values(name, top_values)
        got = np.take_along_axis(dense, top_index[..., : expected.shape[-1]], axis=-1)
        np.testing.assert_allclose(got, expected, atol=tolerance)
        # Order: decoded values at the kept classes descend where the input's do clearly.
        distinct = np.diff(expected, axis=-1) < -2 * tolerance
        assert (np.diff(got, axis=-1)[distinct] <= 0).all()

    def check_round_trip(self, codec, dense, tolerance) -> None:
        """Decoding is a projection: encode(decode(x)) decodes to the same rows."""
        again = codec.decode(codec.encode(dense))
        np.testing.assert_allclose(again, dense, atol=2 * tolerance)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=small_distributions())
    def test_any_small_distribution(self, codec_name, value_dtype, case) -> None:
        probs, k = case
        self.check(codec_name, value_dtype, probs, k)

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=large_distributions())
    @example(
        case=(
            np.random.default_rng(0).dirichlet(np.full(IMAGENET_21K, 0.01), 2).astype(np.float32),
            10,
        )
    )
    def test_large_distributions(self, codec_name, value_dtype, case) -> None:
        probs, k = case
        self.check(codec_name, value_dtype, probs, k)


def fkd_marginal_smoothing(index, values, num_classes):
    """FKD's recovery formula, written independently, one row at a time."""
    rows = []
    for idx, val in zip(
        index.reshape(-1, index.shape[-1]), values.reshape(-1, values.shape[-1]), strict=True
    ):
        row = np.full(num_classes, (1.0 - val.sum()) / (num_classes - len(idx)))
        row[idx] = val
        rows.append(row)
    return np.stack(rows).reshape((*index.shape[:-1], num_classes))


def fkd_marginal_renorm(index, values, num_classes):
    rows = []
    for idx, val in zip(
        index.reshape(-1, index.shape[-1]), values.reshape(-1, values.shape[-1]), strict=True
    ):
        row = np.zeros(num_classes)
        row[idx] = val / val.sum()
        rows.append(row)
    return np.stack(rows).reshape((*index.shape[:-1], num_classes))


@pytest.mark.parametrize("num_classes,k", [(10, 1), (100, 5), (1000, 10), (IMAGENET_21K, 5)])
def test_marginal_codecs_match_fkd_formulas(num_classes, k) -> None:
    rng = np.random.default_rng(num_classes)
    probs = rng.dirichlet(np.full(num_classes, 0.05), size=(4, 3)).astype(np.float32)
    for name, formula in [
        ("marginal_smoothing", fkd_marginal_smoothing),
        ("marginal_renorm", fkd_marginal_renorm),
    ]:
        codec = get_codec(CodecSpec(name, num_classes, k=k, value_dtype="float16"))
        encoded = codec.encode(probs)
        values = encoded["value"].astype(np.float64)
        expected = formula(encoded["index"].astype(np.int64), values, num_classes)
        np.testing.assert_allclose(codec.decode(encoded), expected, atol=1e-5)


@pytest.mark.parametrize(
    "num_classes,dtype",
    [(256, np.uint8), (257, np.uint16), (2049, np.uint16), (65536, np.uint16), (65537, np.uint32)],
)
def test_index_dtype_is_narrowest_that_holds_every_class(num_classes, dtype) -> None:
    codec = get_codec(CodecSpec("hard", num_classes))
    probs = np.zeros((2, num_classes), dtype=np.float32)
    probs[0, num_classes - 1] = 1.0  # the largest index survives (float16 indices broke at 2049)
    probs[1, 2048 % num_classes] = 1.0
    encoded = codec.encode(probs)
    assert encoded["index"].dtype == dtype
    assert encoded["index"].tolist() == [num_classes - 1, 2048 % num_classes]


def test_unknown_codec_lists_known_names() -> None:
    with pytest.raises(ValueError, match="known codecs are .*marginal_smoothing"):
        CodecSpec("marginal_renorm_k5", 10, k=5)


def test_duplicate_registration_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_codec(HardCodec)


@pytest.mark.parametrize(
    "name,k",
    [
        ("hard", 2),
        ("smoothing", 3),
        ("full", 5),
        ("marginal_smoothing", 11),
        ("marginal_renorm", 0),
    ],
)
def test_codec_spec_refuses_bad_k(name, k) -> None:
    with pytest.raises(ValueError, match="k must be|requires k="):
        CodecSpec(name, 10, k=k)


def test_decode_refuses_out_of_range_index() -> None:
    codec = get_codec(CodecSpec("marginal_smoothing", 10, k=2))
    with pytest.raises(ValueError, match="out of range"):
        codec.decode(
            {"index": np.array([[3, 10]], np.uint8), "value": np.array([[9, 9]], np.uint8)}
        )
