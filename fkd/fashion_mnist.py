"""Fashion-MNIST as an ImageFolder tree: ``fkd datasets fashion-mnist --out DIR``.

Fashion-MNIST (Xiao et al. 2017) ships as four gzip IDX files.  They are looked
for, in order, in ``--source``, in ``$FKD_DATA`` (or ``$FKD_DATA/fashion-mnist``),
in Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``)
and, for users with a network, downloaded from the official mirror (checked
against its published MD5 sums) into ``~/.cache/fkd/fashion-mnist``.

The tree is ``DIR/train/<class>/<index>.png`` (the 60k training images) and
``DIR/val/<class>/<index>.png`` (the 10k test images), with the real class names.
It is written into a staging folder and renamed into place, with a ``dataset.json``
describing it, so an interrupted run leaves nothing half-written and a second run
with the same options finds the tree already there.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from fkd.exceptions import UserInputError
from fkd.hashing import file_hexdigest
from fkd.worker_lifetime import die_with_parent

__all__ = [
    "FASHION_MNIST_CLASSES",
    "DatasetError",
    "PreparedDataset",
    "find_fashion_mnist",
    "prepare_fashion_mnist",
    "read_idx",
]

# The official class names, in label order ("T-shirt/top" cannot be a folder name).
FASHION_MNIST_CLASSES = (
    "T-shirt_top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle_boot",
)
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# File name -> MD5 of the official gzip file (as published by the dataset's authors).
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
SPLITS = (("train", "train"), ("val", "t10k"))  # (folder, file prefix)
MARKER = "dataset.json"
MAX_IDX_BYTES = 1 << 30  # Fashion-MNIST's largest file is 47 MB uncompressed


class DatasetError(UserInputError):
    """A dataset that cannot be found, read or written; the message says what to do."""


@dataclass(frozen=True)
class PreparedDataset:
    """What ``prepare_fashion_mnist`` wrote (or found already written)."""

    root: str
    source: str
    classes: tuple[str, ...]
    train_images: int
    val_images: int
    limit_per_class: int | None
    val_limit_per_class: int | None
    reused: bool = False

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["classes"] = list(self.classes)
        del data["reused"]
        return data

    def line(self) -> str:
        verb = "already there" if self.reused else "wrote"
        return (
            f"{self.root}: {verb} {self.train_images} train + {self.val_images} val images, "
            f"{len(self.classes)} classes (from {self.source})"
        )


# Finding the files ------------------------------------------------------------------


def _has_all_files(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FASHION_MNIST_FILES)


def find_fashion_mnist(source: Path | None = None, download: bool = True) -> Path:
    """The folder holding the four IDX files: --source, $FKD_DATA, Debian's, else a download."""
    if source is not None:
        if not _has_all_files(source):
            raise DatasetError(
                f"--source {source} does not hold the Fashion-MNIST files "
                f"({', '.join(FASHION_MNIST_FILES)})"
            )
        return source
    candidates = []
    if os.environ.get("FKD_DATA"):
        root = Path(os.environ["FKD_DATA"])
        candidates += [root, root / "fashion-mnist"]
    candidates.append(DEBIAN_FASHION_MNIST)
    for folder in candidates:
        if _has_all_files(folder):
            return folder
    if not download:
        raise DatasetError(
            "Fashion-MNIST not found: give --source DIR, set FKD_DATA, or install Debian's "
            "dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"
        )
    return download_fashion_mnist(Path.home() / ".cache" / "fkd" / "fashion-mnist")


def download_fashion_mnist(
    dest: Path, base_url: str | None = None, checksums: dict[str, str] | None = None
) -> Path:
    """Download the four files into ``dest`` (MD5-checked against ``checksums``), once.

    ``base_url`` defaults to ``$FKD_FASHION_MNIST_URL``, else the official mirror;
    ``checksums`` to the official files' MD5 sums.
    """
    base = base_url or os.environ.get("FKD_FASHION_MNIST_URL", FASHION_MNIST_URL)
    dest.mkdir(parents=True, exist_ok=True)
    for name, md5 in (checksums or FASHION_MNIST_FILES).items():
        target = dest / name
        if target.is_file() and _md5(target) == md5:
            continue
        partial = dest / f".{name}.partial"
        url = base.rstrip("/") + "/" + name
        try:
            with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise DatasetError(
                f"downloading {url} failed ({error}); without a network, give --source DIR "
                "or install Debian's dataset-fashion-mnist"
            ) from error
        if _md5(partial) != md5:
            partial.unlink()
            raise DatasetError(f"{url}: MD5 differs from the published {md5}; not used")
        partial.replace(target)
    return dest


def _md5(path: Path) -> str:
    return file_hexdigest(path, lambda: hashlib.md5(usedforsecurity=False))


# Reading IDX ------------------------------------------------------------------------


def read_idx(path: Path) -> NDArray[np.uint8]:
    """A gzip IDX file of unsigned bytes: magic 0 0 8 ndim, ndim big-endian uint32 sizes, data."""
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError) as error:
        raise DatasetError(f"{path}: not a readable gzip file ({error})") from error
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise DatasetError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(shape, dtype=np.int64)):
        raise DatasetError(f"{path}: holds {len(data) - header} bytes of data, not {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_split(source: Path, prefix: str) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """(images N×28×28, labels N) of one split, checked against each other."""
    images = read_idx(source / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetError(f"{source}: {prefix} images {images.shape} and labels {labels.shape}")
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise DatasetError(f"{source}: {prefix} labels go up to {int(labels.max())}, not 9")
    return images, labels


def select_per_class(labels: NDArray[np.uint8], limit: int | None) -> NDArray[np.int64]:
    """Indices of the first ``limit`` images of every class, in file order (all if None)."""
    if limit is None:
        return np.arange(len(labels), dtype=np.int64)
    keep = np.zeros(len(labels), dtype=bool)
    for target in range(len(FASHION_MNIST_CLASSES)):
        keep[np.flatnonzero(labels == target)[:limit]] = True
    return np.flatnonzero(keep).astype(np.int64)


# Writing the tree -------------------------------------------------------------------


def _write_pngs(job: tuple[NDArray[np.uint8], Sequence[str]]) -> None:
    from PIL import Image

    images, paths = job
    for image, path in zip(images, paths, strict=True):
        Image.fromarray(image).save(path, compress_level=1)


def _png_jobs(
    split_dir: Path, images: NDArray[np.uint8], labels: NDArray[np.uint8], keep: NDArray[np.int64]
) -> list[tuple[NDArray[np.uint8], list[str]]]:
    for name in FASHION_MNIST_CLASSES:
        (split_dir / name).mkdir(parents=True)
    paths = [
        str(split_dir / FASHION_MNIST_CLASSES[labels[i]] / f"{i:05d}.png") for i in keep.tolist()
    ]
    step = 2000
    return [(images[keep[s : s + step]], paths[s : s + step]) for s in range(0, len(keep), step)]


def prepare_fashion_mnist(
    out: Path,
    source: Path | None = None,
    limit_per_class: int | None = None,
    val_limit_per_class: int | None = None,
    workers: int | None = None,
    overwrite: bool = False,
) -> PreparedDataset:
    """Write Fashion-MNIST as ``out/train/<class>/*.png`` and ``out/val/<class>/*.png``.

    ``val_limit_per_class`` defaults to ``limit_per_class``.  An existing tree made
    with the same options is reused; anything else at ``out`` needs ``overwrite``.
    """
    if val_limit_per_class is None:
        val_limit_per_class = limit_per_class
    for flag, value in (
        ("--limit-per-class", limit_per_class),
        ("--val-limit-per-class", val_limit_per_class),
    ):
        if value is not None and value < 1:
            raise DatasetError(f"{flag} must be at least 1, not {value}")
    wanted = {"limit_per_class": limit_per_class, "val_limit_per_class": val_limit_per_class}
    reused = _existing(out, wanted, overwrite)
    if reused is not None:
        return reused
    found = find_fashion_mnist(source)
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    limits = {"train": limit_per_class, "val": val_limit_per_class}
    counts = {}
    jobs = []
    for folder, prefix in SPLITS:
        images, labels = read_split(found, prefix)
        keep = select_per_class(labels, limits[folder])
        counts[folder] = len(keep)
        jobs += _png_jobs(staging / folder, images, labels, keep)
    with ProcessPoolExecutor(
        max_workers=workers or os.cpu_count() or 1,
        initializer=die_with_parent,  # no PNG writer outlives this process
        initargs=(os.getpid(),),
    ) as pool:
        list(pool.map(_write_pngs, jobs))
    prepared = PreparedDataset(
        str(out),
        str(found),
        FASHION_MNIST_CLASSES,
        counts["train"],
        counts["val"],
        limit_per_class,
        val_limit_per_class,
    )
    (staging / MARKER).write_text(json.dumps(prepared.to_dict(), indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return prepared


def _existing(out: Path, wanted: dict[str, int | None], overwrite: bool) -> PreparedDataset | None:
    """The dataset already at ``out`` when it was made with ``wanted``; refuse anything else."""
    if not out.exists():
        return None
    marker = out / MARKER
    if overwrite:
        if out.is_dir() and not marker.is_file() and any(out.iterdir()):
            raise DatasetError(
                f"{out} holds files fkd did not write; give an empty or new --out folder"
            )
        return None
    if not marker.is_file():
        if out.is_dir() and not any(out.iterdir()):
            return None
        raise DatasetError(f"{out} exists and is not an fkd dataset; choose another --out")
    data = json.loads(marker.read_text())
    if {key: data.get(key) for key in wanted} != wanted:
        raise DatasetError(
            f"{out} was prepared with other options "
            f"({', '.join(f'{k}={data.get(k)}' for k in wanted)}); add --overwrite to redo it"
        )
    return PreparedDataset(
        str(out),
        str(data["source"]),
        tuple(data["classes"]),
        int(data["train_images"]),
        int(data["val_images"]),
        data["limit_per_class"],
        data["val_limit_per_class"],
        reused=True,
    )
