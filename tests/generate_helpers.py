"""Helpers shared by the generate tests: the CLI in-process, real-photo images, store checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner, Result
from PIL import Image
from skimage import data
from store_factory import read_all

from fkd.cli.main import cli
from fkd.storage_formats import LabelStore


def fkd(*args: str | Path) -> Result:
    """``fkd ARGS`` in this process (click's runner), exceptions kept for inspection."""
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def succeeded(result: Result) -> str:
    assert result.exit_code == 0, f"{result.output}\n{result.exc_info}"
    return result.stdout


def one_line_error(result: Result, *fragments: str) -> str:
    """Exit status 1 from a clean click error: one ``Error:`` line, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), f"crashed: {result.exc_info}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def assert_same_store(a: Path | LabelStore, b: Path | LabelStore) -> None:
    """Every array of two stores holds the same values (and dtypes)."""
    arrays_a = read_all(a if isinstance(a, LabelStore) else LabelStore.open(a))
    arrays_b = read_all(b if isinstance(b, LabelStore) else LabelStore.open(b))
    assert arrays_a.keys() == arrays_b.keys()
    for name, values in arrays_a.items():
        assert values.dtype == arrays_b[name].dtype, name
        np.testing.assert_array_equal(values, arrays_b[name], err_msg=name)


def photo_patches(count: int, size: int = 28) -> list[np.ndarray]:
    """``count`` Fashion-MNIST-sized patches cut from real photos (seeded)."""
    sources = [data.chelsea(), data.coffee(), data.astronaut(), data.camera(), data.rocket()]
    rng = np.random.default_rng(0)
    patches = []
    for i in range(count):
        photo = sources[i % len(sources)]
        top = int(rng.integers(0, photo.shape[0] - 4 * size))
        left = int(rng.integers(0, photo.shape[1] - 4 * size))
        patch = Image.fromarray(photo[top : top + 4 * size, left : left + 4 * size])
        patches.append(np.asarray(patch.resize((size, size), Image.Resampling.BILINEAR)))
    return patches


def save_patches(folder: Path, patches: list[np.ndarray]) -> Path:
    """Patches as an ImageFolder: two classes, PNG and JPEG, greyscale ones stay greyscale."""
    for i, patch in enumerate(patches):
        target = folder / ("ab"[i % 2]) / f"img{i:02d}.{'png' if i % 3 else 'jpg'}"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(patch).save(target)
    return folder


def committed_markers(store: Path) -> int:
    folder = store / "block_commit" / "c"
    return len(list(folder.iterdir())) if folder.is_dir() else 0
