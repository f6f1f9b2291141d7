"""``fkd inspect`` on a store made from real photos by the real EfficientNet-Lite0 teacher."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from generate_helpers import one_line_error
from PIL import Image
from skimage import data as skdata

from fkd.cli.main import cli

REQUIRED_JSON_KEYS = {
    "format_version",
    "num_images",
    "crops_per_image",
    "codec",
    "k",
    "num_classes",
    "temperature",
    "committed_blocks",
    "total_blocks",
    "bytes_on_disk",
    "bytes_per_crop",
    "failed_images",
}


@pytest.fixture(scope="module")
def photo_store(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("inspect")
    photos = root / "photos"
    for folder, name in [("cat", "chelsea"), ("coffee", "coffee")]:
        (photos / folder).mkdir(parents=True)
        Image.fromarray(getattr(skdata, name)()).save(photos / folder / f"{name}.jpg", quality=90)
    (photos / "coffee" / "empty.jpg").write_bytes(b"")
    store = root / "photos.zarr"
    result = CliRunner().invoke(
        cli,
        [
            "generate",
            str(photos),
            "--out",
            str(store),
            "-m",
            "4",
            "--workers",
            "0",
            "--block-size",
            "2",
            "--max-failures",
            "0.5",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    return store, photos


def test_inspect_prints_the_right_counts(photo_store) -> None:
    store, _ = photo_store
    result = CliRunner().invoke(cli, ["inspect", str(store)])
    assert result.exit_code == 0, result.output
    assert "images 3, crops per image 4, blocks committed 2/2" in result.output
    assert "codec marginal_smoothing  K=5  C=1000" in result.output
    assert "teacher efficientnet_lite0  input 224 bilinear" in result.output
    assert (
        "failed images 1" in result.output and "coffee/empty.jpg: zero-byte file" in result.output
    )


def test_inspect_json_has_the_documented_keys(photo_store) -> None:
    store, _ = photo_store
    result = CliRunner().invoke(cli, ["inspect", str(store), "--json"])
    summary = json.loads(result.output)
    assert set(summary) >= REQUIRED_JSON_KEYS
    assert summary["num_images"] == 3 and summary["crops_per_image"] == 4
    assert summary["committed_blocks"] == 2
    assert summary["total_blocks"] == 2
    assert summary["failed_images"] == [{"path": "coffee/empty.jpg", "reason": "zero-byte file"}]
    assert summary["bytes_per_crop"] == pytest.approx(summary["bytes_on_disk"] / 12)
    labels = summary["labels"]
    assert labels["images_sampled"] == 2 and 0 < labels["mean_top1_probability"] <= 1
    assert 0 < labels["stored_topk_mass"] <= 1


def test_show_draws_crops_with_their_labels(photo_store, tmp_path) -> None:
    store, photos = photo_store
    out = tmp_path / "chelsea.png"
    result = CliRunner().invoke(
        cli,
        [
            "inspect",
            str(store),
            "--show",
            "cat/chelsea.jpg",
            "--data",
            str(photos),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    with Image.open(out) as picture:
        assert picture.format == "PNG"
        assert picture.size == (round(2.6 * 7 * 80), round(3.4 * 80))


def test_show_without_data_is_a_usage_error(photo_store) -> None:
    store, _ = photo_store
    result = CliRunner().invoke(cli, ["inspect", str(store), "--show", "0"])
    assert result.exit_code == 2 and "--show needs --data" in result.output
    result = CliRunner().invoke(
        cli, ["inspect", str(store), "--show", "cat/nothing.jpg", "--data", ".", "--out", "x.png"]
    )
    assert result.exit_code == 1 and "not in the store's manifest" in result.output


def test_show_reads_images_from_data_train_as_generate_does(photo_store, tmp_path) -> None:
    """``--data DATA`` means DATA/train when that is a folder, the rule of ``fkd generate``
    and ``fkd verify --data``: the store's paths are relative to it."""
    store, photos = photo_store
    shutil.copytree(photos, tmp_path / "DATA" / "train")
    out = tmp_path / "first.png"
    result = CliRunner().invoke(
        cli, ["inspect", str(store), "--show", "0", "--data", str(tmp_path / "DATA"), "--out",
              str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, f"{result.output}\n{result.exc_info}"
    with Image.open(out) as picture:
        assert picture.format == "PNG"


@pytest.mark.parametrize(
    ("image", "fragment"),
    [("coffee/empty.jpg", "zero-byte file"), ("cat/chelsea.jpg", "file missing")],
)
def test_show_of_an_undrawable_image_is_one_error_line(
    photo_store, tmp_path, image, fragment
) -> None:
    """An image that cannot be decoded (recorded as failed) or is not under --data: one
    ``Error:`` line naming it, exit status 1, no traceback, no picture."""
    store, photos = photo_store
    data = photos if image.startswith("coffee") else tmp_path
    out = tmp_path / "x.png"
    result = CliRunner().invoke(
        cli, ["inspect", str(store), "--show", image, "--data", str(data), "--out", str(out)]
    )
    one_line_error(result, image, fragment)
    assert not out.exists()
