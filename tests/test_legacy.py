"""``fkd convert``: original FKD per-image files to a store and back, loaded safely."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from store_factory import make_spec, write_store

from fkd.cli.main import cli
from fkd.legacy import LegacyFormatError, load_legacy_file
from fkd.storage_formats import CodecSpec, LabelStore


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
    files = sorted((tmp_path / "fkd").glob("*/*.tar"))
    assert (
        len(files) == 10
        and files[0].relative_to(tmp_path / "fkd").as_posix() == "class0/image000.tar"
    )

    original = source.read_images(np.arange(10))
    dense = source.decode_labels(original.labels)
    for image, path in enumerate(sorted(source.manifest.paths)):
        stored_index = source.manifest.paths.index(path)
        file = tmp_path / "fkd" / Path(path).parent / f"{Path(path).stem}.tar"
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
