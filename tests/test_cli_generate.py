"""``fkd generate --help`` / ``fkd teacher-eval``: documented options and real evaluations."""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from PIL import Image
from skimage import data

from fkd.cli.main import cli

TEACHER_MODULE = "cli_tiny_teacher"
TEACHER_SOURCE = textwrap.dedent(
    '''
    """A tiny seeded teacher with 10 classes for the teacher-eval tests."""
    import torch
    from torch import nn


    def make():
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(8, 10),
        )
        return net, {"input_size": 32, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    '''
)
ACCURACY_LINE = re.compile(
    r"^top-1 (?P<top1>\d{1,3}\.\d\d)%  top-5 (?P<top5>\d{1,3}\.\d\d)%  "
    r"on (?P<images>\d+) image\(s\)"
    r"(?: \((?P<failed>\d+) failed to decode, skipped\))?$"
)


def fkd(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def accuracy(result: Result) -> dict[str, float]:
    assert result.exit_code == 0, f"{result.output}\n{result.exc_info}"
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    match = ACCURACY_LINE.match(lines[0])
    assert match is not None, lines[0]
    return {key: float(value or 0) for key, value in match.groupdict().items()}


def one_line_error(result: Result, fragment: str) -> None:
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exc_info
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], lines


@pytest.fixture
def tiny_teacher(tmp_path: Path) -> Iterator[str]:
    folder = tmp_path / "teachers"
    folder.mkdir()
    (folder / f"{TEACHER_MODULE}.py").write_text(TEACHER_SOURCE)
    sys.path.insert(0, str(folder))
    yield f"{TEACHER_MODULE}:make"
    sys.path.remove(str(folder))
    sys.modules.pop(TEACHER_MODULE, None)


def photo_folder(root: Path, classes: int, per_class: int) -> Path:
    """An ImageFolder of small patches of real photos, ``classes`` sorted class folders."""
    photos = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    for c in range(classes):
        for i in range(per_class):
            photo = photos[(c + i) % len(photos)]
            patch = photo[20 * i : 20 * i + 96, 30 * c : 30 * c + 96]
            (root / f"class{c:02d}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(patch).resize((48, 48)).save(root / f"class{c:02d}" / f"{i}.jpg")
    return root


# --------------------------------------------------------------------------- --help


@pytest.mark.parametrize("name", ["generate", "teacher-eval"])
def test_help_lists_every_option(name: str) -> None:
    command = cli.commands[name]
    result = CliRunner().invoke(cli, [name, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = result.output
    assert f"Usage: cli {name} [OPTIONS] DATA" in text
    options = [p for p in command.params if isinstance(p, click.Option)]
    assert len(options) >= (20 if name == "generate" else 6)
    for option in options:
        assert option.help, f"{option.name} has no help text"
        for flag in (*option.opts, *option.secondary_opts):
            assert re.search(rf"(^|[\s,]){re.escape(flag)}\b", text, re.M), f"{flag} not in help"
        # The first words of the help text appear too (the help is the one written).
        assert " ".join(option.help.split()[:3]) in " ".join(text.split()), option.name
    assert "-h, --help" in text


# --------------------------------------------------------------------------- teacher-eval


def test_teacher_eval_prints_one_accuracy_line(tiny_teacher: str, tmp_path: Path) -> None:
    folder = photo_folder(tmp_path / "val", classes=3, per_class=4)
    result = fkd("teacher-eval", folder, "--teacher", tiny_teacher, "--workers", "0")
    found = accuracy(result)
    assert found["images"] == 12 and found["failed"] == 0
    assert 0.0 <= found["top1"] <= found["top5"] <= 100.0
    # Every figure is a multiple of 1/12 of the images.
    for key in ("top1", "top5"):
        assert abs(found[key] * 12 / 100 - round(found[key] * 12 / 100)) < 0.01


def test_teacher_eval_skips_and_counts_undecodable_images(
    tiny_teacher: str, tmp_path: Path
) -> None:
    folder = photo_folder(tmp_path / "val", classes=2, per_class=2)
    (folder / "class01" / "broken.jpg").write_text("not a picture\n")
    args = ("teacher-eval", folder, "--teacher", tiny_teacher, "--workers", "0")
    found = accuracy(fkd(*args, "--batch-size", "2"))
    assert (found["images"], found["failed"]) == (4, 1)
    assert found["top1"] in {0.0, 25.0, 50.0, 75.0, 100.0}


def test_teacher_eval_refuses_folders_it_cannot_score(tiny_teacher: str, tmp_path: Path) -> None:
    eleven = photo_folder(tmp_path / "eleven", classes=11, per_class=1)
    one_line_error(
        fkd("teacher-eval", eleven, "--teacher", tiny_teacher, "--workers", "0"),
        "class index 10 but the teacher has 10 classes",
    )
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(data.chelsea()).save(flat / "cat.jpg")
    one_line_error(
        fkd("teacher-eval", flat, "--teacher", tiny_teacher, "--workers", "0"),
        "some images have no class label",
    )
    one_line_error(fkd("teacher-eval", tmp_path / "nowhere"), "does not exist")


@pytest.mark.slow
def test_teacher_eval_of_efficientnet_lite0_on_real_photos(tmp_path: Path) -> None:
    """Chelsea's usual centre crop (short side 256, crop 224) is a tiger cat (282) by a hair
    over Egyptian cat (285); the whole photo (--crop-pct 1.0) is an Egyptian cat."""
    Image.fromarray(data.chelsea()).save(tmp_path / "chelsea.jpg", quality=95)
    Image.fromarray(data.coffee()).save(tmp_path / "coffee.jpg", quality=95)
    listing = tmp_path / "val.csv"
    listing.write_text("path,label\nchelsea.jpg,285\ncoffee.jpg,967\n")
    args = ("teacher-eval", listing, "--workers", "0", "--device", "cpu")
    whole = accuracy(fkd(*args, "--crop-pct", "1.0"))
    assert (whole["top1"], whole["top5"], whole["images"]) == (100.0, 100.0, 2)
    centre = accuracy(fkd(*args))
    assert (centre["top1"], centre["top5"], centre["images"]) == (50.0, 100.0, 2)


@pytest.mark.slow
def test_teacher_eval_of_efficientnet_lite0_on_a_subset_of_imagenet_classes(
    tmp_path: Path,
) -> None:
    """Two class folders, one named by class name and one by wnid, map to the teacher's
    classes 285 (Egyptian cat) and 967 (espresso): no 1000 sorted folders needed."""
    for folder, name, photo in [
        ("Egyptian_cat", "chelsea.jpg", data.chelsea()),
        ("n07920052", "coffee.jpg", data.coffee()),
    ]:
        (tmp_path / "val" / folder).mkdir(parents=True)
        Image.fromarray(photo).save(tmp_path / "val" / folder / name, quality=95)
    args = ("teacher-eval", tmp_path / "val", "--workers", "0", "--device", "cpu")
    whole = accuracy(fkd(*args, "--crop-pct", "1.0"))
    assert (whole["top1"], whole["top5"], whole["images"]) == (100.0, 100.0, 2)
    (tmp_path / "val" / "n99999999").mkdir()
    Image.fromarray(data.coffee()).save(tmp_path / "val" / "n99999999" / "coffee.jpg")
    one_line_error(fkd(*args), "'n99999999' name(s) none of the 1000 classes")
