"""``fkd publish``, and reading a published store from a zip and over real HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from http_server import serve
from store_factory import write_store

from fkd.cli.main import cli
from fkd.storage_formats import LabelStore
from fkd.storage_formats.verify import verify_store


@pytest.fixture
def published(tmp_path) -> Path:
    write_store(tmp_path / "s.zarr")
    result = CliRunner().invoke(
        cli,
        ["publish", str(tmp_path / "s.zarr"), "--out", str(tmp_path / "www" / "labels"), "--zip"],
    )
    assert result.exit_code == 0, result.output
    return tmp_path / "www" / "labels"


@pytest.fixture
def http_root(published) -> Iterator[str]:
    """A real `python -m http.server` on 127.0.0.1 serving the published folder's parent."""
    with serve(published.parent) as url:
        yield url


def test_published_folder_has_card_checksums_and_verifies(published) -> None:
    card = (published / "README.md").read_text()
    assert "fkd soft-label store" in card and "LabelStore.open" in card
    sums = (published / "SHA256SUMS").read_text().splitlines()
    assert any(line.endswith("  label_index/zarr.json") for line in sums)
    assert all(re.fullmatch(r"[0-9a-f]{64}  \S+", line) for line in sums)
    assert "consolidated_metadata" in json.loads((published / "zarr.json").read_text())
    assert verify_store(str(published)) == []
    zipped = published.with_name("labels.zip")
    assert verify_store(str(zipped)) == []
    np.testing.assert_array_equal(
        LabelStore.open(zipped).read_images([3]).labels["index"],
        LabelStore.open(published).read_images([3]).labels["index"],
    )


def test_verify_reports_a_file_changed_after_publishing(published) -> None:
    path = published / "image_target" / "c" / "0"
    path.write_bytes(path.read_bytes() + b"\x00")
    report = "\n".join(p.line() for p in verify_store(str(published)))
    assert "image_target/c/0: sha256 differs from SHA256SUMS" in report


def test_publish_refuses_incomplete_stores_and_existing_folders(tmp_path) -> None:
    write_store(tmp_path / "s.zarr", blocks=[0])
    result = CliRunner().invoke(
        cli, ["publish", str(tmp_path / "s.zarr"), "--out", str(tmp_path / "p")]
    )
    assert result.exit_code == 1 and "uncommitted blocks [1, 2]" in result.output
    (tmp_path / "p").mkdir()
    write_store(tmp_path / "t.zarr")
    result = CliRunner().invoke(
        cli, ["publish", str(tmp_path / "t.zarr"), "--out", str(tmp_path / "p")]
    )
    assert result.exit_code == 1 and "already exists" in result.output


def test_inspect_and_verify_over_http(published, http_root) -> None:
    url = f"{http_root}/labels"
    result = CliRunner().invoke(cli, ["inspect", url, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["num_images"] == 10 and summary["committed_blocks"] == 3
    result = CliRunner().invoke(cli, ["verify", url])
    assert result.exit_code == 0 and "OK" in result.output
    remote = LabelStore.open(url).read_images([0, 9])
    local = LabelStore.open(published).read_images([0, 9])
    np.testing.assert_array_equal(remote.labels["value"], local.labels["value"])
    np.testing.assert_array_equal(remote.boxes, local.boxes)


def test_an_unreachable_url_is_a_one_line_error(http_root) -> None:
    result = CliRunner().invoke(cli, ["inspect", f"{http_root}/no-such-store"])
    assert result.exit_code == 1
    assert "zarr.json is missing" in result.output and "Traceback" not in result.output


def test_a_local_chunk_cache_serves_repeated_reads(published, http_root, tmp_path) -> None:
    url = f"{http_root}/labels"
    cache = tmp_path / "cache"
    first = LabelStore.open(url, cache=cache).read_images([0, 5, 9])
    cached_files = sorted(cache.iterdir())
    # zarr.json documents, per-image chunks and the label shards (read by byte range).
    assert len(cached_files) >= 8
    again = LabelStore.open(url, cache=cache).read_images([0, 5, 9])
    np.testing.assert_array_equal(first.labels["index"], again.labels["index"])
    assert sorted(cache.iterdir()) == cached_files  # served from the cache, nothing new
    local = LabelStore.open(published).read_images([0, 5, 9])
    np.testing.assert_array_equal(again.labels["value"], local.labels["value"])
