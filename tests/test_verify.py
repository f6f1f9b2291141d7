"""``fkd verify``: passes on a sound store, names the place of every kind of damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from store_factory import make_manifest, write_store

from fkd.cli.main import cli
from fkd.storage_formats import Manifest
from fkd.storage_formats.verify import verify_store


@pytest.fixture
def store(tmp_path) -> Path:
    write_store(tmp_path / "s.zarr")
    return tmp_path / "s.zarr"


def lines(problems) -> str:
    return "\n".join(p.line() for p in problems)


def test_a_sound_store_verifies(store) -> None:
    assert verify_store(str(store)) == []
    assert verify_store(str(store), make_manifest()) == []
    result = CliRunner().invoke(cli, ["verify", str(store)])
    assert result.exit_code == 0 and "OK" in result.output


def test_a_flipped_byte_is_found_with_its_block_and_array(store) -> None:
    shard = store / "label_index" / "c" / "1" / "0" / "0"
    raw = bytearray(shard.read_bytes())
    raw[10] ^= 0xFF
    shard.write_bytes(bytes(raw))
    report = lines(verify_store(str(store)))
    assert "block 1 (images 4..7)" in report and "'label_index'" in report


def test_a_deleted_chunk_file_is_found(store) -> None:
    (store / "image_error" / "c" / "2" / "0").unlink()  # all zeros, but written all the same
    report = lines(verify_store(str(store)))
    assert "block 2 (images 8..9)" in report and "image_error/c/2/0 is missing" in report


def test_a_removed_commit_marker_is_found(store) -> None:
    (store / "block_commit" / "c" / "0").unlink()
    report = lines(verify_store(str(store)))
    assert "block 0 (images 0..3): not committed" in report


def test_probabilities_patched_to_nan_through_zarr_are_found(store) -> None:
    values = zarr.open_array(str(store / "label_value"), mode="r+")
    patch = np.asarray(values[5:6])
    patch[0, 2, 0] = np.nan
    values[5:6] = patch
    report = lines(verify_store(str(store)))
    assert "block 1 (images 4..7): label values hold NaN" in report


def test_a_manifest_mismatch_is_found(store) -> None:
    original = make_manifest()
    renamed = Manifest.build(
        [*original.paths[:-1], "class0/renamed.jpg"],
        [*original.nbytes[:-2].tolist(), 1, int(original.nbytes[-1])],
        original.targets,
    )
    report = lines(verify_store(str(store), renamed))
    assert "['class0/image009.jpg']" in report  # missing from the folder
    assert "['class0/renamed.jpg']" in report  # not in the store
    assert "changed size" in report and "class2/image008.jpg" in report


def test_cli_fails_with_a_list_and_exit_status_1(store, tmp_path) -> None:
    (store / "block_commit" / "c" / "1").unlink()
    result = CliRunner().invoke(cli, ["verify", str(store)])
    assert result.exit_code == 1
    assert "block 1 (images 4..7): not committed" in result.output
    assert "1 problem(s) found" in result.output
    result = CliRunner().invoke(cli, ["verify", str(tmp_path / "nowhere.zarr")])
    assert result.exit_code == 1 and "no such store" in result.output
