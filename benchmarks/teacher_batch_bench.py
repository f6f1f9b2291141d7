"""Teacher batch-size sweep: crops/s of one teacher forward per ``--batch-size``, on one device.

What ``fkd generate``'s default ``--batch-size`` per device rests on.  Real crops
(the generate benchmark's photos: skimage.data chelsea, coffee, astronaut, rocket,
camera and scikit-learn's china and flower, M crops each, cut as ``fkd generate``
cuts them on that device) go through the teacher exactly as ``generate`` calls it
(``channels_last`` input, autocast on CUDA, ``inference_mode``), ``--crops`` crops per
batch size, in ``--rounds`` interleaved rounds (ABBA: even rounds small to large,
odd rounds large to small, so the drift of a shared machine cancels out of the
ratios).  Reports crops/s per batch size and round, the median, and each size's
ratio to the largest and to fkd's default on the device.

    python benchmarks/teacher_batch_bench.py [--device cpu|cuda] [--batch-sizes 1,4,8,...]
        [--crops N] [--rounds R] [--teacher SPEC [--weights FILE]] [--out JSON]

Quote ratios from one run; torch's thread count (``OMP_NUM_THREADS``) changes them.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from generate_bench import photo_arrays

from fkd.crops import resampling_for
from fkd.devices import device_autocast, resolve_device
from fkd.generate import GenerateConfig
from fkd.generate.cutter import CropCutter
from fkd.storage_formats import CropSpec
from fkd.teachers import LoadedTeacher, load_teachers

CROPS_PER_PHOTO = 50


def real_crops(teacher: LoadedTeacher, count: int, device: torch.device) -> torch.Tensor:
    """``count`` normalised crops of the photos, cut as ``fkd generate`` cuts them on ``device``."""
    info = teacher.info
    spec = CropSpec(crops_per_image=CROPS_PER_PHOTO)
    resampling = resampling_for(device, info.interpolation).name
    cutter = CropCutter(spec, info.input_size, resampling, info.mean, info.std)
    crops: list[torch.Tensor] = []
    photos = list(photo_arrays().values())
    index = 0
    while sum(len(c) for c in crops) < count:
        image = photos[index % len(photos)]
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        crops.append(cutter.cut(index, image, device))
        index += 1
    return torch.cat(crops)[:count].to(device)


def crops_per_second(
    teacher: LoadedTeacher, crops: torch.Tensor, batch_size: int, device: torch.device
) -> float:
    """Every crop through the teacher in batches of ``batch_size``, as ``generate`` calls it."""
    _synchronize(device)
    start = time.perf_counter()
    with torch.inference_mode(), device_autocast(device):
        for first in range(0, len(crops), batch_size):
            batch = crops[first : first + batch_size].contiguous(memory_format=torch.channels_last)
            teacher.probabilities(batch)
    _synchronize(device)
    return len(crops) / (time.perf_counter() - start)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sweep(
    teacher: LoadedTeacher,
    crops: torch.Tensor,
    sizes: list[int],
    rounds: int,
    device: torch.device,
) -> dict[int, list[float]]:
    for size in sizes:  # warm-up: one batch of each shape (CUDA kernels, oneDNN primitives)
        crops_per_second(teacher, crops[:size], size, device)
    rates: dict[int, list[float]] = {size: [] for size in sizes}
    for r in range(rounds):
        for size in sizes if r % 2 == 0 else list(reversed(sizes)):
            rates[size].append(crops_per_second(teacher, crops, size, device))
            rate = rates[size][-1]
            print(f"round {r + 1}/{rounds}: batch {size}: {rate:.2f} crops/s", flush=True)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32,64,128,256")
    parser.add_argument("--crops", type=int, default=256, help="crops per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--teacher", default="efficientnet_lite0")
    parser.add_argument("--weights", default=None, help="the teacher's weights, if it needs any")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.batch_sizes.split(",")})
    if args.rounds < 1 or args.crops < max(sizes) or min(sizes) < 1:
        parser.error("need --rounds >= 1, batch sizes >= 1 and --crops >= the largest batch")

    device = resolve_device(args.device)
    teacher = load_teachers((args.teacher,), (args.weights,) if args.weights else (), device)
    default = GenerateConfig(data=Path(), out="").batch_size_on(device)
    crops = real_crops(teacher, args.crops, device)
    print(
        f"teacher {args.teacher} on {device} ({_device_name(device)}), torch threads "
        f"{torch.get_num_threads()}, {args.crops} crops per measurement, fkd's default "
        f"batch here {default}",
        flush=True,
    )
    rates = sweep(teacher, crops, sizes, args.rounds, device)
    medians = {size: statistics.median(values) for size, values in rates.items()}
    largest = max(sizes)
    print(f"\nbatch  crops/s (median)  rounds  / batch {largest}  / default")
    for size in sizes:
        rounds = ", ".join(f"{v:.2f}" for v in rates[size])
        vs_default = f"{medians[size] / medians[default]:.2f}" if default in medians else "-"
        print(
            f"{size:5d}  {medians[size]:15.2f}  [{rounds}]  "
            f"{medians[size] / medians[largest]:8.2f}  {vs_default:>8s}"
        )
    best = max(medians, key=medians.__getitem__)
    print(f"fastest: batch {best} ({medians[best]:.2f} crops/s); fkd's default here: {default}")
    if args.out is not None:
        results: dict[str, Any] = {
            "machine": {
                "platform": platform.platform(),
                "device": str(device),
                "device_name": _device_name(device),
                "torch": torch.__version__,
                "torch_threads": torch.get_num_threads(),
            },
            "params": vars(args) | {"out": str(args.out), "default_batch_size": default},
            "crops_per_s_rounds": {str(size): values for size, values in rates.items()},
            "crops_per_s": {str(size): value for size, value in medians.items()},
        }
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
