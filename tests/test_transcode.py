"""``fkd convert --to store``: a ``full`` store re-encoded into other codecs, crops unchanged."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from store_factory import CLASSES, block_data, make_manifest, make_spec, read_all, write_store

from fkd.cli.main import cli
from fkd.storage_formats import STATUS_FAILED, CodecSpec, LabelStore, StoreError, get_codec
from fkd.storage_formats.label_codecs import codec_spec
from fkd.storage_formats.transcode import transcode_store
from fkd.storage_formats.verify import verify_store

FULL = CodecSpec("full", CLASSES, k=CLASSES, value_dtype="float16")


def full_store_with_a_failed_image(path: Path, sampler: str = "stored") -> LabelStore:
    spec = make_spec(codec=FULL, sampler=sampler)
    store = LabelStore.create(path, spec, make_manifest(spec.num_images))
    for block in range(spec.num_blocks):
        data = block_data(spec, block)
        if block == 1:  # image 5 failed to decode: status, reason, zero labels
            status = data.status.copy()
            status[1] = STATUS_FAILED
            labels = {k: v.copy() for k, v in data.labels.items()}
            labels["value"][1] = 0
            data = dataclasses.replace(
                data, status=status, errors=["", "truncated JPEG", "", ""], labels=labels
            )
        store.write_block(block, data)
    return store


@pytest.mark.parametrize(
    ("name", "topk", "dtype"),
    [("marginal_smoothing", 5, "uint8"), ("marginal_renorm", 3, "float16"), ("hard", 9, "uint8")],
)
def test_recoded_labels_are_the_codec_applied_to_the_stored_distributions(
    tmp_path: Path, name: str, topk: int, dtype: str
) -> None:
    source = full_store_with_a_failed_image(tmp_path / "full.zarr")
    codec = codec_spec(name, CLASSES, topk, value_dtype=dtype)
    target = transcode_store(source, tmp_path / "out.zarr", codec)
    assert target.spec.codec.k == (1 if name == "hard" else topk)
    assert verify_store(str(tmp_path / "out.zarr")) == []
    ok = np.arange(10) != 5
    before, after = source.read_images(np.arange(10)), target.read_images(np.arange(10))
    np.testing.assert_array_equal(after.boxes, before.boxes)
    np.testing.assert_array_equal(after.flips, before.flips)
    np.testing.assert_array_equal(after.status, before.status)
    assert target.failures() == [(5, "truncated JPEG")]
    expected = get_codec(codec).encode(source.decode_labels(before.labels)[ok])
    for field, values in after.labels.items():
        np.testing.assert_array_equal(values[ok], expected[field])
        assert not values[~ok].any()
    assert target.spec.crops == source.spec.crops and target.spec.teacher == source.spec.teacher


def test_cli_recodes_and_refuses_what_cannot_be_recoded(tmp_path: Path) -> None:
    write_store(tmp_path / "full.zarr", make_spec(codec=FULL))
    run = CliRunner()
    ok = run.invoke(
        cli,
        [
            "convert",
            "--to",
            "store",
            str(tmp_path / "full.zarr"),
            "--label-type",
            "marginal_smoothing",
            "--topk",
            "4",
            "--out",
            str(tmp_path / "top4.zarr"),
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "re-encoded as marginal_smoothing K=4 (uint8)" in ok.output
    top4 = LabelStore.open(tmp_path / "top4.zarr")
    assert read_all(top4)["label_index"].shape[-1] == 4
    again = run.invoke(
        cli,
        [
            "convert",
            "--to",
            "store",
            str(tmp_path / "top4.zarr"),
            "--label-type",
            "hard",
            "--out",
            str(tmp_path / "h.zarr"),
        ],
    )
    assert again.exit_code == 1 and "needs a store made with --label-type full" in again.output
    assert not (tmp_path / "h.zarr").exists()
    copied = run.invoke(
        cli, ["convert", "--to", "store", str(tmp_path / "full.zarr"), "--out", str(tmp_path / "m")]
    )  # without --label-type: the labels as stored, in the current format
    assert copied.exit_code == 0 and "as format v3" in copied.output, copied.output
    assert LabelStore.open(tmp_path / "m").spec.codec == FULL


def test_uncommitted_source_is_refused(tmp_path: Path) -> None:
    source = write_store(tmp_path / "full.zarr", make_spec(codec=FULL), blocks=[0])
    with pytest.raises(StoreError, match=r"uncommitted blocks \[1, 2\]"):
        transcode_store(source, tmp_path / "o.zarr", codec_spec("hard", CLASSES, 1))
