"""Student-loader benchmark: crops/s delivered to the training loop, fkd vs the usual loaders.

All loaders read the same JPEG files (real photos from ``skimage.data``, copied
to ``--images`` files in class folders), use the same number of DataLoader
worker processes, produce float32 ``[3, 224, 224]`` crops (not normalised) and
are run for the same number of crops after a warm-up:

- ``fkd N=n``: ``fkd.data`` (one decode per image, n stored crops of it, their
  stored labels), batches of 64 crops; ``no labels`` skips the label read; the
  ``roi_align`` row cuts with ``fkd.crops.cut_crops`` instead of the default
  uint8 ``resized_crop`` path; ``uint8 crops`` returns them as uint8
  (``uint8_crops=True``) and the main process turns each batch into float32, as
  ``fkd train`` does on its device (counted in the main process's CPU time: what a
  CPU-only run pays); ``uint8 crops, float on device`` leaves the batch uint8, as the
  loader's CPU is when the conversion runs on a GPU (not counted: there is none here);
  ``reduced decode`` decodes each JPEG with
  ``fkd.images.decode_for_crops`` (DCT-scaled to 1/2, 1/4 or 1/8 when every
  crop of the visit keeps ``--reduced-margin`` x 224 pixels; ``ReducedDecodeDataset``
  stands in for the loader's wiring).
- ``vanilla``: torchvision ``ImageFolder`` + ``RandomResizedCrop(224)`` +
  ``ToTensor`` (one decode per crop, no labels), batches of 64.
- ``FKD original``: the original FKD loader's work per image: ``torch.load`` of
  its per-image label file (``fkd.legacy.export_legacy`` of the same store),
  PIL decode, then PIL crop + resize + flip + ``ToTensor`` for each of N crops.

The store is made by ``fkd generate`` with a tiny random teacher (1000 classes,
``marginal_smoothing`` top-5, uint8 values, M crops per image): what the loader
reads does not depend on the teacher's quality.  Cases run interleaved, for
``--rounds`` rounds; ratios are medians of the per-round ratios.  A second,
in-process measurement times the label read alone (the loader's read of the labels
of the visit's crops, ``LabelStore.read_crops``) against whole items, per batch of
16 images.

Rates are given per wall second and per CPU second (main process plus workers,
over the timed window).  On a shared machine wall time follows the other
tenants' load; CPU seconds measure each loader's own cost far more steadily,
and with the workers saturated, throughput is workers / (CPU-s per crop).

    python benchmarks/loader_bench.py [--images 64] [--crops 2048] [--workers 2] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler
from torchvision import transforms as T
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import default_loader
from torchvision.transforms import functional as TF

from fkd.data import (
    CropLabelDataset,
    CropScheduleSampler,
    collate_crops,
    crop_schedule,
)
from fkd.generate import GenerateConfig, generate
from fkd.images import REDUCTION_MARGIN, decode_for_crops, largest_reduction
from fkd.legacy_fkd_convert import export_legacy
from fkd.storage_formats import LabelStore
from fkd.storage_formats.legacy_fkd import legacy_path

BATCH_CROPS = 64
TEACHER_MODULE = "fkd_loader_bench_teacher"
TEACHER = textwrap.dedent(
    '''
    import torch
    from torch import nn


    def make():
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(8, 1000),
        )
        return net, {"input_size": 32, "interpolation": "bilinear"}
    '''
)
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "camera",
    "coins",
)


# --------------------------------------------------------------------------- data


def make_images(root: Path, count: int) -> Path:
    """``count`` JPEGs (quality 90) of the real photos, round robin, in 4 class folders."""
    from skimage import data

    photos = [np.asarray(getattr(data, name)()) for name in PHOTOS]
    for i in range(count):
        folder = root / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photos[i % len(photos)]).save(folder / f"img{i:04d}.jpg", quality=90)
    return root


def make_store(images: Path, out: Path, crops_per_image: int, teacher_dir: Path) -> LabelStore:
    (teacher_dir / f"{TEACHER_MODULE}.py").write_text(TEACHER)
    sys.path.insert(0, str(teacher_dir))
    config = GenerateConfig(
        data=images,
        out=str(out),
        teachers=(f"{TEACHER_MODULE}:make",),
        crops_per_image=crops_per_image,
        label_type="marginal_smoothing",
        topk=5,
        value_dtype="uint8",
        device="cpu",
        workers=0,
    )
    generate(config, progress=False)
    return LabelStore.open(out)


# --------------------------------------------------------------------------- loaders


class EpochChain(Sampler[int]):
    """``count`` indices from consecutive epochs of a ``CropScheduleSampler``, in one iterator.

    One DataLoader iterator over many epochs keeps the workers busy across epoch
    boundaries, so a 64-image dataset measures throughput, not pipeline refills.
    """

    def __init__(self, dataset: Any, count: int, seed: int = 0) -> None:
        self.dataset = dataset
        self.count = count
        self.seed = seed

    def __iter__(self) -> Iterator[int]:
        produced, epoch = 0, 0
        while True:
            sampler = CropScheduleSampler(self.dataset, 1, 0, seed=self.seed)
            sampler.set_epoch(epoch)
            for index in sampler:
                if produced == self.count:
                    return
                yield index
                produced += 1
            epoch += 1

    def __len__(self) -> int:
        return self.count


class FKDOriginal(Dataset[tuple[torch.Tensor, torch.Tensor, int]]):
    """The original FKD loader's per-image work, on the files ``export_legacy`` wrote."""

    def __init__(self, images: Path, legacy: Path, crops_per_visit: int, size: int) -> None:
        self.samples = ImageFolder(str(images)).samples
        self.labels = [
            legacy_path(legacy, Path(p).relative_to(images).as_posix()) for p, _ in self.samples
        ]
        self.crops_per_visit = crops_per_visit
        self.size = size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        index, visit = int(i), getattr(i, "visit", 0)
        path, target = self.samples[index]
        coords, flips, soft = torch.load(self.labels[index], weights_only=True)
        image = default_loader(path)
        width, height = image.size
        chosen = crop_schedule(0, index, visit, len(coords), self.crops_per_visit)
        crops = []
        for k in chosen.tolist():
            top, left, h, w = coords[k].tolist()
            crop = TF.resized_crop(
                image,
                round(top * height),
                round(left * width),
                round(h * height),
                round(w * width),
                [self.size, self.size],
                interpolation=TF.InterpolationMode.BILINEAR,
            )
            if bool(flips[k]):
                crop = TF.hflip(crop)
            crops.append(TF.to_tensor(crop))
        return torch.stack(crops), soft[torch.from_numpy(chosen)], target


class ReducedDecodeDataset(CropLabelDataset):
    """``CropLabelDataset`` decoding each image as small as its visit's boxes allow.

    What the loader's wiring of ``fkd.images.decode_for_crops`` will do: the visit's
    fraction boxes are known before decoding, so the decode is DCT-scaled when every
    crop keeps ``margin`` x its output size.
    """

    def __init__(self, *args: Any, margin: float = REDUCTION_MARGIN, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.margin = margin

    def _item(
        self,
        position: int,
        chosen: np.ndarray,
        boxes: np.ndarray,
        flips: np.ndarray,
        labels: dict[str, np.ndarray],
    ) -> dict[str, Any]:
        data = Path(self.path_of(position)).read_bytes()
        pixels = decode_for_crops(data, boxes, self.input_size, margin=self.margin)
        return {
            "labels": labels,
            "target": int(self.targets[position]),
            "image_index": int(self.indices[position]),
            "crops": torch.from_numpy(chosen),
            "images": self.cut(pixels, boxes, flips),
        }


def reducible_share(args: argparse.Namespace, store: Path, n: int, visits: int = 8) -> float:
    """Share of visits (N crops, first ``visits`` epochs) that decode below full size."""
    dataset = CropLabelDataset(
        args.images_dir, store, crops_per_visit=n, input_size=args.input_size
    )
    boxes, _ = dataset.store.read_boxes(dataset.indices)
    sizes = [Image.open(dataset.path_of(p)).size for p in range(len(dataset))]
    margin = args.reduced_margin
    reduced = [
        largest_reduction(boxes[p, dataset.schedule(p, v)], h, w, args.input_size, margin) > 1
        for p, (w, h) in enumerate(sizes)
        for v in range(visits)
    ]
    return float(np.mean(reduced))


@dataclass(frozen=True)
class Case:
    name: str
    crops_per_visit: int
    build: Callable[[int], DataLoader[Any]]  # total crops wanted -> loader
    to_float: bool = True  # uint8 crops become float32 in the main process (counted)


def fkd_case(
    args: argparse.Namespace, store: Path, n: int, name: str, to_float: bool = True, **options: Any
) -> Case:
    def build(crops: int) -> DataLoader[Any]:
        kind = ReducedDecodeDataset if "margin" in options else CropLabelDataset
        dataset = kind(
            args.images_dir, store, crops_per_visit=n, input_size=args.input_size, **options
        )
        return DataLoader(
            dataset,
            batch_size=BATCH_CROPS // n,
            sampler=EpochChain(dataset, crops // n),
            num_workers=args.workers,
            collate_fn=collate_crops,
        )

    return Case(name, n, build, to_float)


def vanilla_case(args: argparse.Namespace) -> Case:
    def build(crops: int) -> DataLoader[Any]:
        transform = T.Compose([T.RandomResizedCrop(args.input_size), T.ToTensor()])
        dataset = ImageFolder(str(args.images_dir), transform=transform)
        sampler = RandomSampler(dataset, num_samples=crops)
        return DataLoader(
            dataset, batch_size=BATCH_CROPS, sampler=sampler, num_workers=args.workers
        )

    return Case("vanilla ImageFolder + RandomResizedCrop", 1, build)


def original_case(args: argparse.Namespace, legacy: Path, n: int) -> Case:
    def build(crops: int) -> DataLoader[Any]:
        dataset = FKDOriginal(args.images_dir, legacy, n, args.input_size)
        return DataLoader(
            dataset,
            batch_size=BATCH_CROPS // n,
            sampler=EpochChain(dataset, crops // n),
            num_workers=args.workers,
        )

    return Case(f"FKD original (torch.load + PIL) N={n}", n, build)


def batch_crops(batch: Any, to_float: bool = True) -> int:
    """The crops of a batch; uint8 crops are first turned into float32 (``to_float``) as
    ``fkd train`` does (here on the CPU, in the main process, so the conversion counts)."""
    if isinstance(batch, dict):
        images = batch["images"]
        if to_float and images.dtype == torch.uint8:
            images = images.float()
        return int(images.shape[0])
    images = batch[0]
    return int(images.shape[0] * (images.shape[1] if images.dim() == 5 else 1))


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of this process and of ``pids`` (Linux /proc) so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = time.process_time()
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def measure(case: Case, crops: int, warmup_batches: int) -> tuple[float, float]:
    """(crops per wall second, crops per CPU second) after ``warmup_batches`` batches.

    CPU seconds are those of the main process and of the DataLoader workers over
    the timed window: on a shared machine they measure each loader's cost far
    more steadily than wall time, which follows the other tenants' load.
    """
    loader = case.build(crops + (warmup_batches + 1) * BATCH_CROPS)
    iterator = iter(loader)
    for _ in range(warmup_batches):
        next(iterator)
    pids = [worker.pid for worker in getattr(iterator, "_workers", [])]
    seen = 0
    cpu_start = cpu_seconds(pids)
    start = time.perf_counter()
    while seen < crops:
        seen += batch_crops(next(iterator), case.to_float)
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds(pids) - cpu_start
    del iterator
    return seen / elapsed, seen / cpu


# --------------------------------------------------------------------------- label cost in-process


def label_cost(args: argparse.Namespace, store: Path, passes: int = 5) -> dict[str, float]:
    """CPU milliseconds per image for batches of 16 images at N=4 (the loader's batches).

    The loader's label read (``read_crops`` of the visit's 4 scheduled crops), its
    boxes read (``read_boxes`` of the same crops), and the whole batch of items
    (``dataset.__getitems__``, which does both); medians over ``passes`` passes over
    every image, in this process with one torch thread.  Process CPU time includes
    zarr's I/O threads.
    """
    torch.set_num_threads(1)
    dataset = CropLabelDataset(args.images_dir, store, crops_per_visit=4, input_size=224)
    handle = dataset.store
    batch = BATCH_CROPS // 4
    times: dict[str, list[float]] = {"read_crops": [], "read_boxes": [], "item": []}
    rng = np.random.default_rng(0)
    for visit in range(passes):
        order = rng.permutation(len(dataset))
        for start in range(0, len(order) - batch + 1, batch):
            positions = order[start : start + batch].tolist()
            images = dataset.indices[positions]
            chosen = np.stack([dataset.schedule(p, visit) for p in positions])
            begin = time.process_time()
            handle.read_crops(images, chosen)
            times["read_crops"].append(time.process_time() - begin)
            begin = time.process_time()
            handle.read_boxes(images, chosen)
            times["read_boxes"].append(time.process_time() - begin)
            dataset.set_epoch(visit)
            begin = time.process_time()
            dataset.__getitems__(positions)
            times["item"].append(time.process_time() - begin)
    ms = {name: 1e3 * statistics.median(values) / batch for name, values in times.items()}
    ms["label_share"] = ms["read_crops"] / ms["item"]
    return ms


# --------------------------------------------------------------------------- report


def median_ratio(rounds: list[dict[str, float]], a: str, b: str) -> tuple[float, float, float]:
    ratios = [r[a] / r[b] for r in rounds]
    return statistics.median(ratios), min(ratios), max(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="JPEG files (default 64)")
    parser.add_argument("--crops", type=int, default=2048, help="crops timed per case")
    parser.add_argument("--crops-per-image", type=int, default=200, help="M in the store")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of all cases")
    parser.add_argument("--warmup-batches", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--reduced-margin",
        type=float,
        default=REDUCTION_MARGIN,
        help="boxes >= margin x input size in the reduced decode (the 'reduced decode' row)",
    )
    parser.add_argument(
        "--only",
        default=None,
        help="comma-separated substrings: run only the cases whose name contains one "
        "(vanilla and 'fkd N=4' always run)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="make (or reuse, if an earlier run made them) the images and stores in this folder",
    )
    parser.add_argument("--out", type=Path, default=None, help="write every figure as JSON")
    args = parser.parse_args()

    if args.keep is not None:
        root = args.keep
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="loader-bench-", dir=args.workdir))
    try:
        args.images_dir = root / "images"
        store_path = root / "labels.zarr"
        legacy = root / "legacy"
        started = time.perf_counter()
        if not (root / "done").exists():
            make_images(args.images_dir, args.images)
            make_store(args.images_dir, store_path, args.crops_per_image, root)
            export_legacy(LabelStore.open(store_path), legacy, overwrite=True)
            (root / "done").write_text("images, store and FKD files are complete\n")
        written = len(list(legacy.rglob("*.tar")))
        print(
            f"{args.images} JPEGs, store M={args.crops_per_image} and {written} FKD files "
            f"made in {time.perf_counter() - started:.1f}s under {root}"
        )
        cases = [fkd_case(args, store_path, n, f"fkd N={n}") for n in (1, 2, 4, 8)]
        cases += [
            fkd_case(args, store_path, 4, "fkd N=4, no labels", with_labels=False),
            fkd_case(
                args, store_path, 4, "fkd N=4, roi_align cut", resampling="roi-align-bilinear"
            ),
            fkd_case(args, store_path, 4, "fkd N=4, uint8 crops", uint8_crops=True),
            fkd_case(
                args,
                store_path,
                4,
                "fkd N=4, uint8 crops, float on device",
                to_float=False,
                uint8_crops=True,
            ),
            vanilla_case(args),
            original_case(args, legacy, 4),
            fkd_case(args, store_path, 4, "fkd N=4, reduced decode", margin=args.reduced_margin),
        ]
        if args.only:
            wanted = [part for part in args.only.split(",") if part] + ["vanilla"]
            cases = [c for c in cases if c.name == "fkd N=4" or any(w in c.name for w in wanted)]
        share = reducible_share(args, store_path, 4)
        print(f"visits of N=4 decoded below full size: {share:.1%}")
        rounds: list[dict[str, float]] = []
        cpu_rounds: list[dict[str, float]] = []
        for number in range(args.rounds):
            rates, cpu_rates = {}, {}
            for case in cases:
                rates[case.name], cpu_rates[case.name] = measure(
                    case, args.crops, args.warmup_batches
                )
                print(
                    f"round {number + 1}: {case.name:42s} {rates[case.name]:7.1f} crops/s, "
                    f"{cpu_rates[case.name]:7.1f} crops/CPU-s"
                )
            rounds.append(rates)
            cpu_rounds.append(cpu_rates)
        costs = label_cost(args, store_path)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)

    vanilla = next(c.name for c in cases if c.name.startswith("vanilla"))
    original = next((c.name for c in cases if c.name.startswith("FKD original")), None)
    table = []
    for case in cases:
        wall = [r[case.name] for r in rounds]
        cpu = [r[case.name] for r in cpu_rounds]
        table.append(
            {
                "loader": case.name,
                "crops_per_visit": case.crops_per_visit,
                "crops_per_s": statistics.median(wall),
                "crops_per_s_min": min(wall),
                "crops_per_s_max": max(wall),
                "crops_per_cpu_s": statistics.median(cpu),
                "cpu_vs_vanilla": median_ratio(cpu_rounds, case.name, vanilla)[0],
                "wall_vs_vanilla": median_ratio(rounds, case.name, vanilla)[0],
            }
        )
    ratios: dict[str, dict[str, tuple[float, float, float]]] = {}
    for basis, data in (("cpu", cpu_rounds), ("wall", rounds)):
        names = set(data[0])
        pairs = {
            "fkd4_over_vanilla": ("fkd N=4", vanilla),
            "fkd4_uint8_over_vanilla": ("fkd N=4, uint8 crops", vanilla),
            "fkd4_uint8_over_fkd4": ("fkd N=4, uint8 crops", "fkd N=4"),
            "fkd4_reduced_over_vanilla": ("fkd N=4, reduced decode", vanilla),
            "fkd4_reduced_over_fkd4": ("fkd N=4, reduced decode", "fkd N=4"),
            "fkd4_over_fkd_original": ("fkd N=4", original),
            "roi_align_over_resized_crop": ("fkd N=4, roi_align cut", "fkd N=4"),
        }
        ratios[basis] = {
            key: median_ratio(data, a, b) for key, (a, b) in pairs.items() if {a, b} <= names
        }
        if {"fkd N=4, no labels", "fkd N=4"} <= names:
            ratios[basis]["label_overhead"] = tuple(  # type: ignore[assignment]
                r - 1 for r in median_ratio(data, "fkd N=4, no labels", "fkd N=4")
            )
    print()
    print(
        "| loader | crops/CPU-s | x vanilla (CPU) | crops/s wall (median, min..max) "
        "| x vanilla (wall) |"
    )
    print("|---|---:|---:|---:|---:|")
    for row in table:
        print(
            f"| {row['loader']} | {row['crops_per_cpu_s']:.0f} | {row['cpu_vs_vanilla']:.2f} "
            f"| {row['crops_per_s']:.0f} "
            f"({row['crops_per_s_min']:.0f}..{row['crops_per_s_max']:.0f}) "
            f"| {row['wall_vs_vanilla']:.2f} |"
        )
    print()
    for basis, named in ratios.items():
        for name, (mid, low, high) in named.items():
            print(f"{basis:4s} {name}: {mid:.3f} (rounds {low:.3f}..{high:.3f})")
    print(
        "in-process CPU per image (batches of 16, N=4): read_crops (labels) "
        "{read_crops:.3f} ms, read_boxes {read_boxes:.3f} ms, whole item {item:.2f} ms -> "
        "labels {label_share:.1%} of an item".format(**costs)
    )
    if args.out:
        report = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "torch": torch.__version__,
                "torchvision": torchvision.__version__,
            },
            "rounds_wall": rounds,
            "rounds_cpu": cpu_rounds,
            "table": table,
            "ratios": ratios,
            "in_process_ms": costs,
            "reduced_visits_share": share,
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
