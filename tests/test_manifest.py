"""The manifest's vectorised path checks and digest agree with their one-path definitions."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fkd.storage_formats.manifest import Manifest, check_relative_path
from fkd.storage_formats.path_bytes import encode_paths, join_paths, rows_to_paths

# Characters that make paths interesting: separators, dots, a multi-byte letter, and the
# bytes the format forbids.
PATHS = st.text(alphabet="ab./é\\\x00", min_size=0, max_size=12)


def reference_ok(path: str) -> bool:
    try:
        check_relative_path(path)
    except ValueError:
        return False
    return True


def reference_digest(paths, nbytes, targets, hashes=None) -> str:
    """docs/format.md §4.2, one line at a time."""
    h = hashlib.sha256()
    for i, (path, size, target) in enumerate(zip(paths, nbytes, targets, strict=True)):
        tail = f"\t{hashes[i]}" if hashes else ""
        h.update(f"{path}\t{int(size)}\t{int(target)}{tail}\n".encode())
    return "sha256:" + h.hexdigest()


@settings(max_examples=400, deadline=None)
@given(st.lists(PATHS, min_size=1, max_size=6, unique=True))
def test_vectorised_checks_accept_exactly_the_paths_the_definition_accepts(paths) -> None:
    data, offsets = join_paths(paths)
    expected = all(reference_ok(p) for p in paths)
    try:
        Manifest(data, offsets, np.zeros(len(paths)), np.zeros(len(paths)))
    except ValueError:
        accepted = False
    else:
        accepted = True
    assert accepted == expected, paths


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b/c.jpg", "é/ü.png", "x.y.z", "n0/n0_1.JPEG"]), min_size=1),
    st.data(),
)
def test_the_vectorised_digest_is_the_documented_one(names, data) -> None:
    paths = [f"{i}/{name}" for i, name in enumerate(names)]
    count = len(paths)
    nbytes = data.draw(st.lists(st.integers(0, 2**64 - 1), min_size=count, max_size=count))
    targets = data.draw(st.lists(st.integers(-1, 2**31 - 1), min_size=count, max_size=count))
    hashed = data.draw(st.booleans())
    hashes = [hashlib.sha256(p.encode()).hexdigest() for p in paths] if hashed else None
    manifest = Manifest.build(paths, np.array(nbytes, dtype=np.uint64), targets, hashes)
    assert manifest.digest() == reference_digest(paths, nbytes, targets, hashes)
    assert list(manifest.paths) == paths and manifest.sha256 == (tuple(hashes) if hashes else None)


def test_v1_rows_round_trip_and_duplicates_are_found() -> None:
    paths = ["a/x.jpg", "b/é.png", "c"]
    data, offsets = rows_to_paths(encode_paths(paths, 16))
    manifest = Manifest(data, offsets, [1, 2, 3], [0, 1, 2])
    assert list(manifest.paths) == paths and manifest.duplicate_paths() == []
    twice = Manifest(*join_paths(["a", "b", "a"]), [1, 1, 1], [0, 0, 0])
    assert twice.duplicate_paths() == ["a"]
    with pytest.raises(ValueError, match="unique"):
        Manifest.build(["a", "a"], [1, 1])


@pytest.mark.parametrize(
    "offsets, message",
    [([0, 3, 2, 4], "offsets"), ([1, 2, 3, 4], "offsets"), ([0, 2, 4, 9], "offsets")],
)
def test_inconsistent_offsets_are_refused(offsets, message) -> None:
    data = np.frombuffer(b"abcd", dtype=np.uint8)
    with pytest.raises(ValueError, match=message):
        Manifest(data, np.array(offsets), [1, 1, 1], [0, 0, 0])


def test_checks_and_digest_agree_across_pass_boundaries(monkeypatch) -> None:
    """With 2 rows per numpy pass, every boundary case lies between two passes."""
    import random

    from fkd.storage_formats import manifest as module

    monkeypatch.setattr(module, "ROWS_PER_PASS", 2)
    rng = random.Random(3)
    for _ in range(300):
        paths = list({"".join(rng.choices("ab./é", k=rng.randint(0, 5))) for _ in range(7)})
        data, offsets = join_paths(paths)
        expected = all(reference_ok(p) for p in paths)
        try:
            made = Manifest(data, offsets, np.arange(len(paths)), np.zeros(len(paths)))
        except ValueError:
            assert not expected, paths
            continue
        assert expected, paths
        assert made.digest() == reference_digest(paths, range(len(paths)), [0] * len(paths))
