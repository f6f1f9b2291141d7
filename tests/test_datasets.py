"""``fkd datasets fashion-mnist``: real Fashion-MNIST (Debian's IDX files) as ImageFolder trees."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from http_server import serve
from PIL import Image

from fkd.cli.main import cli
from fkd.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_FILES,
    DatasetError,
    download_fashion_mnist,
    find_fashion_mnist,
    prepare_fashion_mnist,
    read_idx,
)

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(
    not (DEBIAN / "train-images-idx3-ubyte.gz").exists(),
    reason="Debian's dataset-fashion-mnist is not installed (make test installs it)",
)


def invoke(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def test_tree_has_real_class_names_and_the_idx_pixels(tmp_path: Path) -> None:
    out = tmp_path / "fm"
    code, output = invoke(
        "datasets",
        "fashion-mnist",
        "--out",
        out,
        "--limit-per-class",
        3,
        "--val-limit-per-class",
        2,
        "--json",
    )
    assert code == 0, output
    written = json.loads(output)
    assert written["train_images"] == 30 and written["val_images"] == 20
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(FASHION_MNIST_CLASSES)
    images = read_idx(DEBIAN / "train-images-idx3-ubyte.gz")
    labels = read_idx(DEBIAN / "train-labels-idx1-ubyte.gz")
    # The first three training images of class "Ankle_boot" (label 9), pixel for pixel.
    expected = np.flatnonzero(labels == 9)[:3]
    files = sorted((out / "train" / "Ankle_boot").glob("*.png"))
    assert [int(f.stem) for f in files] == expected.tolist()
    for index, path in zip(expected, files, strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(path)), images[index])
    assert len(list((out / "val").rglob("*.png"))) == 20
    assert json.loads((out / "dataset.json").read_text())["limit_per_class"] == 3


def test_second_run_reuses_other_options_are_refused_and_overwrite_redoes(tmp_path: Path) -> None:
    out = tmp_path / "fm"
    first = prepare_fashion_mnist(out, limit_per_class=2)
    assert not first.reused and first.train_images == 20 and first.val_images == 20
    again = prepare_fashion_mnist(out, limit_per_class=2)
    assert again.reused and again.train_images == 20
    code, output = invoke("datasets", "fashion-mnist", "--out", out, "--limit-per-class", 4)
    assert code == 1 and output.count("\n") == 1
    assert "prepared with other options" in output and "--overwrite" in output
    redone = prepare_fashion_mnist(out, limit_per_class=4, overwrite=True)
    assert redone.train_images == 40 and len(list((out / "train").rglob("*.png"))) == 40
    assert not list(tmp_path.glob(".*partial"))  # the staging folder was renamed into place


def test_foreign_folder_and_bad_source_are_refused_in_one_line(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    code, output = invoke("datasets", "fashion-mnist", "--out", foreign, "--limit-per-class", 1)
    assert code == 1 and "is not an fkd dataset" in output and output.count("\n") == 1
    code, output = invoke(
        "datasets", "fashion-mnist", "--out", foreign, "--overwrite", "--limit-per-class", 1
    )
    assert code == 1 and "did not write" in output
    assert (foreign / "notes.txt").read_text() == "keep me"
    code, output = invoke(
        "datasets", "fashion-mnist", "--out", tmp_path / "x", "--source", tmp_path
    )
    assert code == 1 and "does not hold the Fashion-MNIST files" in output
    assert not (tmp_path / "x").exists()


def test_fkd_data_is_searched_before_debian(tmp_path: Path, monkeypatch) -> None:
    copy = tmp_path / "data" / "fashion-mnist"
    copy.mkdir(parents=True)
    for name in FASHION_MNIST_FILES:
        (copy / name).symlink_to(DEBIAN / name)
    monkeypatch.setenv("FKD_DATA", str(tmp_path / "data"))
    assert find_fashion_mnist(download=False) == copy
    monkeypatch.setenv("FKD_DATA", str(tmp_path / "nothing-here"))
    assert find_fashion_mnist(download=False) == DEBIAN


def test_truncated_idx_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(DEBIAN / "train-images-idx3-ubyte.gz") as handle:
        head = handle.read(10_000)
    broken.write_bytes(gzip.compress(head))
    with pytest.raises(DatasetError, match="holds 9984 bytes of data"):
        read_idx(broken)
    (tmp_path / "plain.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="not a readable gzip file"):
        read_idx(tmp_path / "plain.gz")


@pytest.fixture
def mirror() -> Iterator[str]:
    """Debian's files served as a mirror by a real HTTP server on 127.0.0.1."""
    with serve(DEBIAN) as url:
        yield url + "/"


def test_download_checks_md5_and_keeps_nothing_that_fails(tmp_path: Path, mirror: str) -> None:
    # Debian recompressed the files, so the official MD5 sums do not match them:
    # the download path must refuse them and leave no partial file behind.
    with pytest.raises(DatasetError, match="MD5 differs from the published"):
        download_fashion_mnist(tmp_path / "official", mirror)
    assert list((tmp_path / "official").iterdir()) == []
    local_sums = {
        name: hashlib.md5((DEBIAN / name).read_bytes()).hexdigest() for name in FASHION_MNIST_FILES
    }
    got = download_fashion_mnist(tmp_path / "cache", mirror, local_sums)
    for name in FASHION_MNIST_FILES:
        assert (got / name).read_bytes() == (DEBIAN / name).read_bytes()
    with pytest.raises(DatasetError, match="without a network, give --source"):
        download_fashion_mnist(tmp_path / "none", "http://127.0.0.1:9/", local_sums)
    shutil.rmtree(tmp_path / "cache")
