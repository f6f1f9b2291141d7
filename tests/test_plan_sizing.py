"""``fkd generate --for-epochs``: M sized for a student run, checked against the crop
schedule itself, refused beside ``-m``, and shown by ``--plan`` against the default M."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from generate_helpers import fkd, photo_patches, save_patches, succeeded

from fkd.crop_budget import crops_for_epochs, epochs_covered, uses_per_crop, visits_for
from fkd.crops.schedule import crop_schedule
from fkd.exceptions import OptionError
from fkd.generate.config import DEFAULT_CROPS_PER_IMAGE, GenerateConfig

IMAGES = 20
TINY = ("--teacher", "distributed_helpers:make", "--block-size", "2", "--device", "cpu", "-q")


def config(**options: object) -> GenerateConfig:
    return GenerateConfig(data=Path("images"), out="labels.zarr", **options)  # type: ignore[arg-type]


def most_uses(epochs: int, n: int, m: int, image: int = 3) -> int:
    """The most times a run of ``epochs`` crop-epochs uses one stored crop (the schedule's)."""
    visits = [crop_schedule(7, image, v, m, n) for v in range(visits_for(epochs, n))]
    return int(np.bincount(np.concatenate(visits), minlength=m).max())


# --------------------------------------------------------------------------- the arithmetic


@pytest.mark.parametrize("n", [1, 3, 4, 8])
@pytest.mark.parametrize("reuse", [1, 2, 3, 5])
@pytest.mark.parametrize("epochs", [1, 4, 10, 13, 31, 64])
def test_the_sized_m_is_the_fewest_whole_visits_using_no_crop_more_than_reuse_times(
    epochs: int, n: int, reuse: int
) -> None:
    m = crops_for_epochs(epochs, n, reuse)
    assert m >= n and m % n == 0
    assert most_uses(epochs, n, m) <= reuse
    if reuse == 1:  # every crop fresh: a run of E crop-epochs uses V x N distinct crops
        assert m == visits_for(epochs, n) * n
    if m > n:  # one visit fewer per cycle would use some crop more than R times
        assert most_uses(epochs, n, m - n) > reuse
    assert epochs_covered(m, n, reuse) >= epochs
    assert most_uses(epochs, n, m) == np.ceil(uses_per_crop(epochs, n, m) - 1e-9)


@pytest.mark.parametrize(("m", "n"), [(200, 4), (202, 4), (8, 4), (12, 5), (3, 4)])
def test_epochs_covered_is_the_longest_run_with_every_crop_fresh(m: int, n: int) -> None:
    covered = epochs_covered(m, n)
    if m < n:
        assert covered == 0  # fkd train refuses N > M
        return
    assert most_uses(covered, n, m) == 1
    assert most_uses(covered + 1, n, m) == 2
    assert epochs_covered(m, n, reuse=3) == n * (3 * m // n)


# --------------------------------------------------------------------------- the config


def test_for_epochs_sizes_m_and_without_it_m_is_as_given_or_200() -> None:
    assert config().crops_per_image == DEFAULT_CROPS_PER_IMAGE == 200
    assert config(crops_per_image=8).crops_per_image == 8
    sized = config(for_epochs=300)
    assert (sized.crops_per_image, sized.crops_per_visit, sized.reuse) == (300, 4, 1)
    assert config(for_epochs=300, reuse=3).crops_per_image == 100
    assert config(for_epochs=10, crops_per_visit=4, reuse=2).crops_per_image == 8
    assert config(for_epochs=10, reuse=9).crops_per_image == 4  # at least one visit
    # A config rebuilt from its own fields keeps its M (the sized M agrees with itself).
    assert dataclasses.replace(sized, seed=1).crops_per_image == 300


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"for_epochs": 300, "crops_per_image": 200}, "give --for-epochs or -m/--crops-per-image"),
        ({"for_epochs": 300_000}, "need M = 300000, more than a store holds (65536)"),
        ({"for_epochs": 0}, "0 is not in the range x>=1"),
        ({"for_epochs": 8, "reuse": 0}, "0 is not in the range x>=1"),
        ({"for_epochs": 8, "crops_per_visit": 0}, "0 is not in the range 1<=x<=65536"),
    ],
)
def test_bad_sizing_is_refused_naming_the_flag(options: dict[str, object], fragment: str) -> None:
    with pytest.raises(OptionError) as refused:
        config(**options)
    assert fragment in str(refused.value), str(refused.value)
    flag = {"reuse": "--reuse", "crops_per_visit": "--crops-per-visit"}
    expected = next((flag[k] for k, v in options.items() if k in flag and v == 0), "--for-epochs")
    assert refused.value.option == expected


# --------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_patches(tmp_path_factory.mktemp("images"), photo_patches(IMAGES))


def test_for_epochs_beside_an_explicit_m_is_a_one_line_usage_error(
    images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "x.zarr"
    for args, fragments in [
        (("--for-epochs", "12", "-m", "8"), ("--for-epochs", "-m/--crops-per-image", "not both")),
        (("--for-epochs", "9999999"), ("--for-epochs", "more than a store holds")),
    ]:
        result = fkd("generate", images, "--out", out, *TINY, *args)
        assert result.exit_code == 2, result.output
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and all(part in errors[0] for part in fragments), result.stderr
        assert "Traceback" not in result.output
    assert not out.exists()


def test_generate_for_epochs_records_the_sized_m(images: Path, tmp_path: Path) -> None:
    from fkd.storage_formats import LabelStore

    out = tmp_path / "sized.zarr"
    succeeded(fkd("generate", images, "--out", out, *TINY, "--workers", "0",
                  "--for-epochs", "10", "--crops-per-visit", "4", "--reuse", "2"))  # fmt: skip
    assert LabelStore.open(out).spec.crops_per_image == 8


def test_plan_for_epochs_shows_its_m_against_the_default_m(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "planned.zarr"
    args = ("generate", images, "--out", out, *TINY, "--plan", "--plan-crops-per-s", "0.16")
    lines = succeeded(fkd(*args, "--for-epochs", "10")).splitlines()
    assert not out.exists()
    assert lines[1].startswith(f"crops {IMAGES * 12} (M=12),")
    assert lines[-2] == (
        "student: M=12 sized by --for-epochs 10 at N=4 crops per visit (--crops-per-visit) "
        "and --reuse 1: 3 visits per image use 12 crops, each stored crop once"
    )
    against = re.fullmatch(
        r"against -m 200 \(the default M\): store ~([\d.]+) (B|KB|MB) vs ~([\d.]+) (KB|MB), "
        r"([\d.]+) vs ([\d.]+) teacher-hours; at M=200 the same run would use 12 of the "
        r"200 stored crops, each once",
        lines[-1],
    )
    assert against, lines[-1]
    # Teacher-hours: 20 images x M crops at 0.16 crops/s.
    assert (against[5], against[6]) == ("0.417", "6.94")
    unit = {"B": 1, "KB": 1e3, "MB": 1e6}
    small, large = (float(against[i]) * unit[against[i + 1]] for i in (1, 3))
    assert small < large and "0.417 teacher-hours for 240 crops" in lines[3]

    lines = succeeded(fkd(*args, "--for-epochs", "10", "--reuse", "2")).splitlines()
    assert lines[-2].startswith("student: M=8 sized by --for-epochs 10 at N=4")
    assert lines[-2].endswith("12 crops, each stored crop 1.5 times, at most 2")
    lines = succeeded(fkd(*args, "--for-epochs", "400", "-n", "1")).splitlines()
    assert lines[-1].endswith("the same run would use each stored crop 2 times")


def test_plan_with_m_alone_says_which_runs_it_serves_fresh(images: Path, tmp_path: Path) -> None:
    args = ("generate", images, "--out", tmp_path / "p.zarr", *TINY, "--plan")
    lines = succeeded(fkd(*args, "--plan-crops-per-s", "1", "-m", "10")).splitlines()
    assert lines[-1] == (
        "student: M=10 serves --for-epochs up to 8 at N=4 crops per visit with every crop "
        "fresh (2 visits per image); a run of E crop-epochs uses each crop about E/10 times"
    )
    lines = succeeded(
        fkd(*args, "--plan-crops-per-s", "1", "-m", "10", "-n", "2", "--reuse", "3")
    ).splitlines()
    assert "up to 10 at N=2" in lines[-1] and "up to 30 with --reuse 3" in lines[-1]
