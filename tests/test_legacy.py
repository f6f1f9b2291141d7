"""``fkd convert``: original FKD per-image files to a store and back, loaded safely."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from generate_helpers import fkd, one_line_error, succeeded
from PIL import Image
from skimage import data
from store_factory import block_data, make_spec, write_store
from torchvision.datasets import ImageFolder

from fkd.cli.main import cli
from fkd.legacy_fkd_convert import load_legacy_file
from fkd.storage_formats import CodecSpec, LabelStore, Manifest
from fkd.storage_formats.legacy_fkd import LegacyFormatError


def fkd_recover(labels: torch.Tensor, num_classes: int, kind: str) -> np.ndarray:
    """The original FKD recovery formulas, written independently, crop by crop."""
    rows = []
    for label in labels:
        if kind == "marginal_smoothing":
            index, value = label[0].long(), label[1].float()
            row = torch.full((num_classes,), float((1 - value.sum()) / (num_classes - len(index))))
            row[index] = value
        elif kind == "marginal_renorm":
            index, value = label[0].long(), label[1].float()
            row = torch.zeros(num_classes)
            row[index] = value / value.sum()
        else:  # smoothing: [index, value]
            row = torch.full((num_classes,), float((1 - label[1]) / (num_classes - 1)))
            row[label[0].long()] = label[1].float()
        rows.append(row)
    return torch.stack(rows).numpy()


@pytest.mark.parametrize(
    "codec",
    [
        CodecSpec("marginal_smoothing", 50, k=5, value_dtype="float16"),
        CodecSpec("marginal_renorm", 50, k=3, value_dtype="uint8"),
        CodecSpec("smoothing", 50, value_dtype="float16"),
    ],
)
def test_store_to_fkd_files_and_back(tmp_path, codec) -> None:
    source = write_store(tmp_path / "s.zarr", make_spec(codec=codec))
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["convert", "--to", "fkd-legacy", str(tmp_path / "s.zarr"), "--out", str(tmp_path / "fkd")],
    )
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "fkd").rglob("*.tar"))
    assert (
        len(files) == 10
        and files[0].relative_to(tmp_path / "fkd").as_posix() == "train/class0/image000.tar"
    )

    original = source.read_images(np.arange(10))
    dense = source.decode_labels(original.labels)
    for image, path in enumerate(sorted(source.manifest.paths)):
        stored_index = source.manifest.paths.index(path)
        file = tmp_path / "fkd" / "train" / Path(path).parent / f"{Path(path).stem}.tar"
        coords, flips, labels = torch.load(file, weights_only=True)
        np.testing.assert_allclose(coords.numpy(), original.boxes[stored_index], atol=1e-6)
        np.testing.assert_array_equal(flips.numpy(), original.flips[stored_index])
        recovered = fkd_recover(labels, 50, codec.name)
        np.testing.assert_allclose(recovered, dense[stored_index], atol=2e-3)
        assert image >= 0

    label_type = ["--label-type", codec.name] if codec.name == "marginal_renorm" else []
    result = runner.invoke(
        cli,
        [
            "convert",
            "--from",
            "fkd-legacy",
            str(tmp_path / "fkd"),
            "--out",
            str(tmp_path / "back.zarr"),
            "--num-classes",
            "50",
            *label_type,
        ],
    )
    assert result.exit_code == 0, result.output
    back = LabelStore.open(tmp_path / "back.zarr")
    assert back.spec.codec.name == codec.name and back.spec.codec.k == codec.k
    assert back.spec.crops.sampler == "stored"
    order = [
        back.manifest.paths.index(f"{Path(p).parent}/{Path(p).stem}.JPEG")
        for p in source.manifest.paths
    ]
    again = back.read_images(order)
    assert np.abs(again.boxes - original.boxes).max() <= 1 / 65535
    np.testing.assert_array_equal(again.flips, original.flips)
    np.testing.assert_array_equal(again.labels["index"], original.labels["index"])
    np.testing.assert_allclose(back.decode_labels(again.labels), dense, atol=2e-3)


class Canary:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_pickle_payload_in_an_fkd_file_is_refused(tmp_path) -> None:
    canary = tmp_path / "canary"
    folder = tmp_path / "fkd" / "cat"
    folder.mkdir(parents=True)
    bad = folder / "evil.tar"
    torch.save([np.zeros((2, 4)), np.zeros(2, bool), Canary(canary)], bad)
    with pytest.raises(LegacyFormatError, match="evil.tar: not a safe FKD label file"):
        load_legacy_file(bad)
    result = CliRunner().invoke(
        cli,
        [
            "convert",
            "--from",
            "fkd-legacy",
            str(tmp_path / "fkd"),
            "--out",
            str(tmp_path / "s.zarr"),
        ],
    )
    assert result.exit_code == 1 and "evil.tar: not a safe FKD label file" in result.output
    assert not canary.exists()
    assert not (tmp_path / "s.zarr").exists()  # nothing half-converted is left behind
    # Positive control: unpickling the same object does run the payload.
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"import pickle, sys; sys.path.insert(0, "
            f"{str(Path(__file__).parent)!r}); import test_legacy; pickle.loads("
            f"{pickle.dumps(Canary(canary))!r})",
        ],
        check=True,
    )
    assert canary.exists()


def test_truncated_and_malformed_files_are_reported(tmp_path) -> None:
    folder = tmp_path / "fkd" / "cat"
    folder.mkdir(parents=True)
    good = folder / "a.tar"
    torch.save(
        [torch.zeros(4, 4), torch.zeros(4, dtype=torch.bool), torch.zeros(4, 2, 3).half()], good
    )
    truncated = folder / "b.tar"
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(LegacyFormatError, match="b.tar: not a safe FKD label file"):
        load_legacy_file(truncated)
    wrong = folder / "c.tar"
    torch.save([torch.zeros(4, 4), torch.zeros(3, dtype=torch.bool), torch.zeros(4)], wrong)
    with pytest.raises(LegacyFormatError, match="c.tar: inconsistent shapes"):
        load_legacy_file(wrong)
    result = CliRunner().invoke(
        cli,
        [
            "convert",
            "--from",
            "fkd-legacy",
            str(tmp_path / "fkd"),
            "--out",
            str(tmp_path / "s.zarr"),
        ],
    )
    assert result.exit_code == 1 and "b.tar" in result.output
    assert not (tmp_path / "s.zarr").exists()


# --------------------------------------------------------------------------- exports FKD's own
# training script reads (issue 14: items 1, 2, 8 and 14)


def store_with_paths(path: Path, paths: list[str], codec: CodecSpec | None = None) -> LabelStore:
    """A small committed store whose manifest lists ``paths`` (blocks of 4 images)."""
    manifest = Manifest.build(paths, [1000 + i for i in range(len(paths))], [0] * len(paths))
    spec = replace(make_spec(len(paths), codec=codec), **manifest.spec_fields())
    store = LabelStore.create(path, spec, manifest)
    for block in range(spec.num_blocks):
        store.write_block(block, block_data(spec, block))
    return store


def files_under(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (relative POSIX path: bytes)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def to_legacy(store: Path, out: Path, *options: str):
    return fkd("convert", "--to", "fkd-legacy", store, "--out", out, *options)


@pytest.mark.parametrize(
    "pair",
    [("cat/x.jpg", "cat/x.png"), ("cat/x.1.jpg", "cat/x.2.jpg")],
    ids=["same-stem", "same-name-up-to-first-dot"],
)
def test_two_images_with_one_fkd_label_file_are_refused_before_writing(tmp_path, pair) -> None:
    """FKD finds labels by class folder and file name up to its first '.': two images it
    cannot tell apart are refused, naming both, and nothing is written."""
    store_with_paths(tmp_path / "s.zarr", ["cat/a.jpg", *pair, "dog/y.jpg"])
    before = files_under(tmp_path)
    line = one_line_error(to_legacy(tmp_path / "s.zarr", tmp_path / "out"), *pair)
    assert "cat/x.tar" in line and "rename" in line
    assert not (tmp_path / "out").exists()
    assert files_under(tmp_path) == before  # no staging folder or half export left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


def test_an_existing_export_is_replaced_whole_or_not_at_all(tmp_path) -> None:
    """A non-empty --out is refused without --overwrite; with it, the new export replaces
    the old one whole (no file of the first store survives), and a folder holding anything
    but FKD label files is never replaced."""
    first = store_with_paths(tmp_path / "a.zarr", [f"c{i % 3}/img{i:02d}.jpg" for i in range(10)])
    second = store_with_paths(
        tmp_path / "b.zarr",
        [f"c{i % 3}/img{i:02d}.jpg" for i in range(6)],
        CodecSpec("smoothing", 50, value_dtype="float16"),
    )
    out = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "wrote 10 FKD label files" in succeeded(to_legacy(tmp_path / "a.zarr", empty))
    succeeded(to_legacy(tmp_path / "a.zarr", out))
    exported = files_under(out)
    assert len(exported) == first.spec.num_images

    one_line_error(to_legacy(tmp_path / "b.zarr", out), str(out), "--overwrite")
    assert files_under(out) == exported

    assert "wrote 6 FKD label files" in succeeded(
        to_legacy(tmp_path / "b.zarr", out, "--overwrite")
    )
    replaced = files_under(out)
    assert len(replaced) == second.spec.num_images
    for name in replaced:
        _, _, labels = torch.load(out / name, weights_only=True)
        assert labels.shape == (second.spec.crops_per_image, 2), name  # smoothing: [index, value]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr", "b.zarr", "empty", "out"]

    (out / "notes.txt").write_text("my notes\n")
    kept = files_under(out)
    one_line_error(to_legacy(tmp_path / "a.zarr", out, "--overwrite"), str(out), "notes.txt")
    assert files_under(out) == kept
    one_line_error(to_legacy(tmp_path / "a.zarr", tmp_path / "a.zarr", "--overwrite"))
    assert LabelStore.open(tmp_path / "a.zarr").is_complete()


def test_an_export_failing_half_way_leaves_the_old_export_untouched(tmp_path) -> None:
    """A corrupt chunk in the last block stops the export after the first blocks' files
    were written: the previous export (of another store) stays as it was, and no staging
    folder is left."""
    paths = [f"c{i % 3}/img{i:02d}.jpg" for i in range(10)]
    store_with_paths(tmp_path / "old.zarr", paths, CodecSpec("smoothing", 50))
    store_with_paths(tmp_path / "s.zarr", paths)
    out = tmp_path / "out"
    succeeded(to_legacy(tmp_path / "old.zarr", out))
    exported = files_under(out)
    chunks = [
        p
        for p in (tmp_path / "s.zarr" / "label_value").rglob("*")
        if p.is_file()
        and p.relative_to(tmp_path / "s.zarr" / "label_value").parts[:2] == ("c", "2")
    ]
    assert chunks, "the last block's label chunk"
    raw = bytearray(chunks[0].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunks[0].write_bytes(bytes(raw))
    result = to_legacy(tmp_path / "s.zarr", out, "--overwrite")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert files_under(out) == exported
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.zarr", "out", "s.zarr"]


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory) -> tuple[Path, Path]:
    """DATA/train/<class>/<image> of real photos (one name with a dot in its stem), and a
    store generated from DATA by the real EfficientNet-Lite0 teacher."""
    root = tmp_path_factory.mktemp("imagenet_like")
    photos = {
        "n02123045/chelsea.jpg": data.chelsea(),
        "n02123045/kitten.crop.png": data.chelsea()[50:250, 100:350],
        "n07920052/coffee.jpg": data.coffee(),
        "n09999999/astronaut.JPEG": data.astronaut(),
    }
    for name, pixels in photos.items():
        target = root / "DATA" / "train" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(target, format="PNG" if name.endswith("png") else "JPEG")
    (root / "DATA" / "val").mkdir()
    store = root / "labels.zarr"
    succeeded(fkd("generate", root / "DATA", "--out", store, "-m", "6", "--workers", "0", "-q"))
    return root / "DATA", store


def fkd_train_script_label_path(softlabel_path: str, path: str) -> str:
    """``ImageFolder_FKD.__getitem__`` of FKD's utils_FKD.py (szq0214/FKD), verbatim: the
    label of the image at ``path`` (a sample of ``ImageFolder(DATA/train)``)."""
    return os.path.join(softlabel_path, "/".join(path.split("/")[-3:]).split(".")[0] + ".tar")


def test_fkd_own_training_script_finds_every_label(imagenet_like, tmp_path) -> None:
    """``python train_FKD.py --softlabel_path OUT DATA`` reads DATA/train with torchvision's
    ImageFolder and looks each label up by FKD's rule: every lookup finds a file, loads with
    weights_only=True, replays the stored boxes and recovers soft labels summing to 1."""
    images, store_path = imagenet_like
    out = tmp_path / "soft_label"
    assert "wrote 4 FKD label files" in succeeded(to_legacy(store_path, out))
    store = LabelStore.open(store_path)
    stored = store.read_images(np.arange(store.spec.num_images))
    dense = store.decode_labels(stored.labels)
    samples = ImageFolder(os.path.join(str(images), "train")).samples  # as train_FKD.py does
    looked_up = set()
    for path, _target in samples:
        label_path = fkd_train_script_label_path(str(out), path)
        coords, flips, labels = torch.load(label_path, map_location="cpu", weights_only=True)
        looked_up.add(os.path.relpath(label_path, out))
        row = store.manifest.paths.index(os.path.relpath(path, images / "train"))
        np.testing.assert_allclose(coords.numpy(), stored.boxes[row], atol=1e-6)
        np.testing.assert_array_equal(flips.numpy(), stored.flips[row])
        soft = torch.from_numpy(fkd_recover(labels, 1000, "marginal_smoothing"))
        np.testing.assert_allclose(soft.sum(dim=1).numpy(), 1.0, atol=1e-3)
        np.testing.assert_allclose(soft.numpy(), dense[row], atol=2e-3)
    assert looked_up == set(files_under(out)) and len(looked_up) == len(samples) == 4
    assert "train/n02123045/kitten.tar" in looked_up  # cut at the first '.', as FKD does


def test_fkd_files_from_an_export_come_back_with_their_images(imagenet_like, tmp_path) -> None:
    """``--from fkd-legacy OUT --data DATA`` reads OUT/train and DATA/train (the rule
    ``fkd generate`` applies): the same images, sizes, boxes and labels as the store."""
    images, store_path = imagenet_like
    out = tmp_path / "soft_label"
    succeeded(to_legacy(store_path, out))
    back = tmp_path / "back.zarr"
    succeeded(fkd("convert", "--from", "fkd-legacy", out, "--data", images, "--out", back))
    original, again = LabelStore.open(store_path), LabelStore.open(back)
    assert sorted(again.manifest.paths) == sorted(original.manifest.paths)
    order = [original.manifest.paths.index(p) for p in again.manifest.paths]
    first, second = original.read_images(order), again.read_images(np.arange(len(order)))
    np.testing.assert_array_equal(second.height, first.height)
    np.testing.assert_array_equal(second.width, first.width)
    np.testing.assert_array_equal(again.manifest.targets, original.manifest.targets[order])
    assert np.abs(second.boxes - first.boxes).max() <= 1 / 65535
    np.testing.assert_array_equal(second.labels["index"], first.labels["index"])


def test_fkd_files_without_their_images_are_one_line_errors(imagenet_like, tmp_path) -> None:
    images, store_path = imagenet_like
    out = tmp_path / "soft_label"
    succeeded(to_legacy(store_path, out))
    elsewhere = tmp_path / "other" / "train" / "n02123045"
    elsewhere.mkdir(parents=True)
    Image.fromarray(data.camera()).save(elsewhere / "camera.png")
    back = tmp_path / "back.zarr"
    one_line_error(
        fkd("convert", "--from", "fkd-legacy", out, "--data", tmp_path / "other", "--out", back),
        "no image under",
    )
    assert not back.exists()
    twice = tmp_path / "twice" / "train" / "n02123045"
    shutil.copytree(images / "train", tmp_path / "twice" / "train")
    Image.fromarray(data.chelsea()).save(twice / "chelsea.png")
    one_line_error(
        fkd("convert", "--from", "fkd-legacy", out, "--data", tmp_path / "twice", "--out", back),
        "n02123045/chelsea.jpg",
        "n02123045/chelsea.png",
    )
    assert not back.exists()
