"""Generation benchmark: ``fkd generate`` end to end vs teacher-only vs the original FKD pipeline.

On real photos (skimage.data chelsea, coffee, astronaut, rocket, camera and
scikit-learn's china and flower, saved as JPEG quality 90 into a temporary
ImageFolder and copied round-robin up to N images) with the real
EfficientNet-Lite0 teacher, in one run, R rounds (``--rounds``) of these passes
on the same images, teacher and M, interleaved so that the drift of a shared
machine cancels out of the ratios:

1. teacher only: the crops fkd cuts (same boxes, same cut path, pre-cut and
   pre-normalised in memory, channels_last) batched exactly as ``generate``
   batches them, through ``teacher.probabilities`` alone;
2. fkd end to end: ``generate(GenerateConfig(...))`` with fkd's defaults (crop
   interpolation, batch and block size, decode workers) into a fresh store,
   from the scan to the committed store (teacher loading included); unless
   ``--no-bicubic``, also with ``interpolation="bicubic"`` (the exact per-crop
   ``resized_crop`` path, EfficientNet-Lite0's own resampling); every stage is
   wrapped in a timer (see ``Stages``), nothing else changes;
3. the original FKD generation pipeline, re-implemented here: DataLoader
   workers decode with PIL and cut M crops one by one with torchvision's
   ``RandomResizedCrop`` (PIL bicubic) + flip + ``ToTensor`` + ``Normalize``;
   the teacher runs over segments of 50 crops; a Python loop ``argsort``s each
   crop for its top 5; one ``torch.save`` file per image holding
   ``[coords (M,4), flip (M,), labels (M,2,5)]``.

Even rounds run teacher only, fkd, original, fkd bicubic; odd rounds the
reverse (ABBA), so the two headline pairs (fkd vs original, fkd vs teacher
only) are adjacent in every round.  Each round gives its own ratios; the report
quotes them per round with their median, min and max.  After the rounds:

4. the baseline's teacher call vs fkd's, alternated (``--call-rounds``);
5. a per-stage profile of one image through fkd's steps and the baseline's.

Quote the ratios measured in one run; absolute times depend on the machine.

    python benchmarks/generate_bench.py [--rounds R] [--images N] [--crops M] [--out JSON]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T
from torchvision.transforms import functional as TF

import fkd.crops
import fkd.generate.labeller
import fkd.generate.pipeline
import fkd.teachers
from fkd import crops as crop_ops
from fkd.generate import GenerateConfig, generate
from fkd.generate.config import CPU_BATCH_SIZE
from fkd.generate.cutter import CropCutter
from fkd.generate.labeller import BlockLabeller
from fkd.generate.store_setup import build_spec
from fkd.generate.summary import store_bytes
from fkd.images import decode_image, scan_source
from fkd.label_codecs_torch import encode_torch, to_numpy_fields
from fkd.storage_formats import (
    STATUS_OK,
    BlockData,
    CropSpec,
    LabelStore,
    TeacherInfo,
    sample_boxes,
)
from fkd.teachers import LoadedTeacher, load_teacher

TEACHER = "efficientnet_lite0"
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "camera", "china", "flower")
JPEG_QUALITY = 90
CLASS_DIR = "photos"
BASELINE_SEGMENT = 50  # crops per teacher forward in the FKD baseline
BASELINE_TOPK = 5
WARMUP_CROPS = 8
CPU = torch.device("cpu")


# Data ------------------------------------------------------------------------------------


def photo_arrays() -> dict[str, np.ndarray]:
    """The seven photos as uint8 arrays (camera is greyscale, the others RGB)."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    arrays = {name: getattr(skimage.data, name)() for name in PHOTOS[:5]}
    sample = load_sample_images()
    for filename, image in zip(sample.filenames, sample.images, strict=True):
        arrays[Path(filename).stem] = image
    return {name: np.ascontiguousarray(arrays[name]) for name in PHOTOS}


def write_image_folder(root: Path, count: int) -> dict[str, Any]:
    """``root/photos/NNN_<photo>.jpg``: the photos as JPEG q90, copied round-robin to ``count``."""
    folder = root / CLASS_DIR
    folder.mkdir(parents=True)
    encoded: dict[str, bytes] = {}
    shapes: dict[str, list[int]] = {}
    for name, array in photo_arrays().items():
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        encoded[name] = buffer.getvalue()
        shapes[name] = list(array.shape)
    for i in range(count):
        name = PHOTOS[i % len(PHOTOS)]
        (folder / f"{i:03d}_{name}.jpg").write_bytes(encoded[name])
    return {"photos": shapes, "jpeg_bytes": {k: len(v) for k, v in encoded.items()}}


# Timing helpers ---------------------------------------------------------------------------


@dataclass
class Stages:
    """Seconds and calls per stage, accumulated by wrapped functions."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start
                self.calls[name] += 1

        return timed


@contextlib.contextmanager
def instrumented(stages: Stages, targets: list[tuple[Any, str, str]]) -> Iterator[None]:
    """Wrap ``owner.attr`` (module or class attribute) in a timer named ``stage``; restore."""
    saved = []
    try:
        for owner, attr, stage in targets:
            raw = vars(owner)[attr]
            if isinstance(raw, staticmethod):
                new: Any = staticmethod(stages.wrap(stage, raw.__func__))
            else:
                new = stages.wrap(stage, raw)
            saved.append((owner, attr, raw))
            setattr(owner, attr, new)
        yield
    finally:
        for owner, attr, raw in reversed(saved):
            setattr(owner, attr, raw)


def generate_stage_targets() -> list[tuple[Any, str, str]]:
    """The functions ``fkd.generate``'s pipeline calls per stage, as looked up at call time."""
    return [
        (fkd.generate.pipeline, "scan_source", "setup: scan"),
        (fkd.generate.pipeline, "load_teachers", "setup: load teacher"),
        (fkd.generate.pipeline, "open_or_create_store", "setup: create store"),
        (BlockLabeller, "boxes", "boxes (sample)"),
        (fkd.crops, "image_to_tensor", "image to tensor"),
        (CropCutter, "cut_boxes", "cut crops (main process; workers cut off this path)"),
        (fkd.crops, "normalise", "normalise"),
        (fkd.generate.labeller, "_take", "batch (torch.cat)"),
        (fkd.teachers.LoadedTeacher, "probabilities", "teacher forward"),
        (fkd.generate.labeller, "encode_torch", "encode (topk + quantise)"),
        (fkd.generate.labeller, "to_numpy_fields", "encoded to numpy"),
    ]


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# 1. Teacher only --------------------------------------------------------------------------


@dataclass
class PreparedImages:
    indices: np.ndarray
    images: list[np.ndarray]
    boxes: np.ndarray  # [N, M, 4] pixels
    flips: np.ndarray  # [N, M]


def prepare(data: Path, config: GenerateConfig) -> PreparedImages:
    """Decode every image and sample its boxes exactly as ``generate`` does."""
    source = scan_source(data)
    indices = np.arange(len(source), dtype=np.int64)
    images = [decode_image(source.path_of(int(i))) for i in indices]
    height = np.array([im.shape[0] for im in images])
    width = np.array([im.shape[1] for im in images])
    spec = CropSpec(
        crops_per_image=config.crops_per_image,
        scale=config.scale,
        ratio=config.ratio,
        flip_prob=config.flip_prob,
        seed=config.seed,
    )
    boxes, flips = sample_boxes(spec, indices, height, width)
    return PreparedImages(indices, images, boxes.astype(np.float64), flips)


def crop_info(config: GenerateConfig, teacher: LoadedTeacher) -> TeacherInfo:
    """Input size, interpolation, mean and std ``generate`` will use for these options."""
    return build_spec(config, scan_source(config.data), teacher).teacher


def teacher_batches(
    prepared: PreparedImages, teacher: LoadedTeacher, config: GenerateConfig
) -> list[torch.Tensor]:
    """fkd's crops, normalised, in ``generate``'s batches (per block, ``batch_size`` crops)."""
    info = crop_info(config, teacher)
    cutter = CropCutter(  # boxes are given: the crop spec only sizes M
        CropSpec(crops_per_image=config.crops_per_image),
        info.input_size,
        str(info.resampling),
        info.mean,
        info.std,
    )
    size = config.batch_size_on(CPU)
    batches: list[torch.Tensor] = []
    for start in range(0, len(prepared.images), config.block_size):
        crops = []
        for row in range(start, min(start + config.block_size, len(prepared.images))):
            crops.append(
                cutter.cut_boxes(
                    prepared.images[row], prepared.boxes[row], prepared.flips[row], "cpu"
                )
            )
        joined = torch.cat(crops)
        for first in range(0, len(joined), size):
            batch = joined[first : first + size]
            batches.append(batch.contiguous(memory_format=torch.channels_last))
    return batches


BASE_CALL = f"{BASELINE_SEGMENT} crops, NCHW (the baseline's call)"
BASE_CALL_CL = f"{BASELINE_SEGMENT} crops, channels_last"
FKD_CALL = "fkd's first batch, channels_last"
WHATIF_CALL = f"{BASELINE_SEGMENT} crops, channels_last input and model (what-if)"


def teacher_calls(
    teacher: LoadedTeacher, batches: list[torch.Tensor], rounds: int, temperature: float
) -> dict[str, Any]:
    """The baseline's teacher call vs fkd's, alternated in rounds on the same crops.

    Three calls: the baseline's (50 crops, NCHW), the same with channels_last
    input, and fkd's first batch (``batch_size`` crops, channels_last); plus a
    what-if: the 50 crops with the teacher's weights in channels_last too (fkd
    converts the model only on CUDA).  Alternating the calls keeps most of this
    shared machine's drift out of their ratios.
    """
    import copy

    module_cl = copy.deepcopy(teacher.module).to(memory_format=torch.channels_last)
    crops = torch.cat(batches).contiguous()
    segment = crops[:BASELINE_SEGMENT]
    inputs = {
        BASE_CALL: segment,
        BASE_CALL_CL: segment.contiguous(memory_format=torch.channels_last),
        FKD_CALL: batches[0],
        WHATIF_CALL: segment.contiguous(memory_format=torch.channels_last),
    }

    def call(name: str) -> None:
        with torch.inference_mode():
            if name == WHATIF_CALL:
                module_cl(inputs[name], temperature)
            else:
                teacher.probabilities(inputs[name], temperature)

    for name in (BASE_CALL, BASE_CALL_CL, WHATIF_CALL):  # warm-up (fkd's batch ran already)
        call(name)
    seconds: dict[str, list[float]] = {name: [] for name in inputs}
    for r in range(rounds):
        order = list(inputs) if r % 2 == 0 else list(reversed(inputs))
        for name in order:
            start = time.perf_counter()
            call(name)
            seconds[name].append(time.perf_counter() - start)
    rates = {name: len(inputs[name]) / statistics.median(times) for name, times in seconds.items()}
    return {
        "seconds": seconds,
        "sizes": {name: len(x) for name, x in inputs.items()},
        "crops_per_s": rates,
        "channels_last/NCHW (50 crops)": rates[BASE_CALL_CL] / rates[BASE_CALL],
        "fkd call/baseline call": rates[FKD_CALL] / rates[BASE_CALL],
        "channels_last model+input/channels_last input (50 crops)": rates[WHATIF_CALL]
        / rates[BASE_CALL_CL],
    }


def run_teacher_only(
    teacher: LoadedTeacher, batches: list[torch.Tensor], temperature: float
) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    with torch.inference_mode():
        probs = [teacher.probabilities(batch, temperature) for batch in batches]
    seconds = time.perf_counter() - start
    return seconds, torch.cat(probs)


# 2. fkd end to end ------------------------------------------------------------------------


def run_fkd(config: GenerateConfig) -> dict[str, Any]:
    stages = Stages()
    start = time.perf_counter()
    with instrumented(stages, generate_stage_targets()):
        summary = generate(config, progress=False)
    wall = time.perf_counter() - start
    crops = summary.crops
    setup = sum(v for k, v in stages.seconds.items() if k.startswith("setup"))
    teacher_rest = summary.teacher_seconds - sum(
        stages.seconds[k]
        for k in ("teacher forward", "encode (topk + quantise)", "encoded to numpy")
    )
    split = dict(stages.seconds)
    split["decode wait"] = summary.decode_wait_seconds
    split["run_teacher rest (channels_last copy, isfinite)"] = teacher_rest
    split["write (background thread)"] = summary.write_seconds
    split["other"] = wall - sum(split.values())
    return {
        "wall_s": wall,
        "summary_seconds": summary.seconds,
        "crops": crops,
        "images": summary.images,
        "crops_per_s": crops / wall,
        "crops_per_s_excluding_setup": crops / (wall - setup),
        "teacher_forward_crops_per_s": crops / stages.seconds["teacher forward"],
        "setup_s": setup,
        "summary_split_s": {
            "decode_wait": summary.decode_wait_seconds,
            "teacher": summary.teacher_seconds,
            "write": summary.write_seconds,
        },
        "stages_s": split,
        "calls": dict(stages.calls),
        "bytes_on_disk": summary.bytes_on_disk,
        "summary_lines": summary.lines(),
    }


# 3. The original FKD pipeline -------------------------------------------------------------


class FKDOriginalDataset(Dataset[tuple[Any, ...]]):
    """FKD's soft-label dataset: PIL decode, M x RandomResizedCrop + flip + ToTensor + Normalize."""

    def __init__(self, root: Path, num_crops: int, size: int, mean: Any, std: Any) -> None:
        self.folder = torchvision.datasets.ImageFolder(str(root))
        self.num_crops = num_crops
        self.rrc = T.RandomResizedCrop(
            size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation=T.InterpolationMode.BICUBIC
        )
        self.flip_prob = 0.5
        self.post = T.Compose([T.ToTensor(), T.Normalize(mean, std)])

    def __len__(self) -> int:
        return len(self.folder.samples)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        start = time.perf_counter()
        path, _ = self.folder.samples[index]
        image = self.folder.loader(path)
        decoded = time.perf_counter()
        width, height = image.size
        crops, coords, flips = [], [], []
        for _ in range(self.num_crops):
            top, left, h, w = self.rrc.get_params(image, self.rrc.scale, self.rrc.ratio)
            crop = TF.resized_crop(image, top, left, h, w, self.rrc.size, self.rrc.interpolation)
            flip = bool(torch.rand(1) < self.flip_prob)
            if flip:
                crop = TF.hflip(crop)
            crops.append(self.post(crop))
            coords.append([top / height, left / width, h / height, w / width])
            flips.append(flip)
        done = time.perf_counter()
        return (
            torch.stack(crops),
            torch.tensor(coords, dtype=torch.float32),
            torch.tensor(flips),
            index,
            decoded - start,
            done - decoded,
        )


def fkd_original_labels(probs: torch.Tensor) -> torch.Tensor:
    """``[M, 2, 5]``: per crop, argsort for the top-5 indices (as float) and their values."""
    labels = torch.zeros(len(probs), 2, BASELINE_TOPK)
    for k in range(len(probs)):
        order = torch.argsort(probs[k], descending=True)[:BASELINE_TOPK]
        labels[k, 0] = order.float()
        labels[k, 1] = probs[k, order]
    return labels


def run_baseline(data: Path, out: Path, crops: int, workers: int, temperature: float) -> dict:
    times: dict[str, float] = defaultdict(float)
    start = time.perf_counter()
    teacher = load_teacher(TEACHER)
    times["setup: load teacher"] = time.perf_counter() - start
    info = teacher.info
    dataset = FKDOriginalDataset(data, crops, info.input_size, info.mean, info.std)
    times["setup: scan"] = time.perf_counter() - start - times["setup: load teacher"]
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=workers)
    total = 0
    worker_decode = worker_crops = 0.0
    iterator = iter(loader)
    while True:
        wait = time.perf_counter()
        try:
            images, coords, flips, index, decode_s, crop_s = next(iterator)
        except StopIteration:
            times["loader wait (decode + crop in workers)"] += time.perf_counter() - wait
            break
        now = time.perf_counter()
        times["loader wait (decode + crop in workers)"] += now - wait
        worker_decode += float(decode_s)
        worker_crops += float(crop_s)
        segments = []
        for segment in images[0].split(BASELINE_SEGMENT):
            segments.append(teacher.probabilities(segment, temperature))
        probs = torch.cat(segments)
        mark = time.perf_counter()
        times["teacher forward"] += mark - now
        labels = fkd_original_labels(probs)
        now = time.perf_counter()
        times["argsort top-5 loop"] += now - mark
        path, _ = dataset.folder.samples[int(index)]
        target = out / Path(path).parent.name / f"{Path(path).stem}.tar"
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save([coords[0], flips[0], labels], target)
        times["torch.save per image"] += time.perf_counter() - now
        total += len(probs)
    wall = time.perf_counter() - start
    times["other"] = wall - sum(times.values())
    return {
        "wall_s": wall,
        "crops": total,
        "crops_per_s": total / wall,
        "teacher_forward_crops_per_s": total / times["teacher forward"],
        "stages_s": dict(times),
        "worker_decode_s": worker_decode,
        "worker_crop_s": worker_crops,
        "bytes_on_disk": store_bytes(str(out)),
    }


# 4. One image, stage by stage -------------------------------------------------------------


def profile_one_image(
    data: Path, workdir: Path, teacher: LoadedTeacher, config: GenerateConfig, repeats: int
) -> dict[str, Any]:
    """Median seconds of each of fkd's per-image steps, and the baseline's, on image 0."""
    one = workdir / "one"
    (one / CLASS_DIR).mkdir(parents=True)
    first = sorted((data / CLASS_DIR).iterdir())[0]
    shutil.copy(first, one / CLASS_DIR / first.name)
    source = scan_source(one)
    info = teacher.info
    path = source.path_of(0)
    image = decode_image(path)
    prepared = prepare(one, config)
    boxes, flips = prepared.boxes[0], prepared.flips[0]
    tensor = crop_ops.image_to_tensor(image)
    cut_bicubic = crop_ops.cut_crops_reference(tensor, boxes, flips, info.input_size, "bicubic")
    normalised = crop_ops.normalise(cut_bicubic, info.mean, info.std)
    batch = normalised.contiguous(memory_format=torch.channels_last)
    spec = build_spec(config, source, teacher)
    probs = teacher.probabilities(batch, config.temperature)
    m = config.crops_per_image
    size = info.input_size
    shape = np.array(image.shape[:2])

    def encode() -> Any:
        bool(torch.isfinite(probs).all())
        return to_numpy_fields(encode_torch(probs, spec.codec), spec.codec)

    encoded = encode()
    data_block = BlockData(
        np.array([image.shape[0]], dtype=np.uint32),
        np.array([image.shape[1]], dtype=np.uint32),
        np.array([STATUS_OK], dtype=np.uint8),
        [""],
        {name: value.reshape(1, m, *value.shape[1:]) for name, value in encoded.items()},
    )
    stores = iter(range(10_000))

    def write() -> None:
        location = workdir / f"one-store-{next(stores)}"
        store = LabelStore.create(location, spec, source.manifest)
        begin = time.perf_counter()
        store.write_block(0, data_block)
        write_times.append(time.perf_counter() - begin)

    write_times: list[float] = []

    def one_thread(fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return fn()
            finally:
                torch.set_num_threads(threads)

        return run

    fkd_steps: dict[str, Callable[[], Any]] = {
        "decode (fkd: simplejpeg)": lambda: decode_image(path),
        "sample boxes": lambda: sample_boxes(spec.crops, np.array([0]), shape[:1], shape[1:]),
        "image to tensor": lambda: crop_ops.image_to_tensor(image),
        "cut: uint8 resized_crop per crop (bilinear on CPU, the default)": lambda: (
            crop_ops.cut_crops_uint8(image, boxes, flips, size)
        ),
        "cut: the same, 1 torch thread (as in a decode worker)": one_thread(
            lambda: crop_ops.cut_crops_uint8(image, boxes, flips, size)
        ),
        "cut: roi_align (bilinear on a GPU), on CPU": lambda: crop_ops.cut_crops(
            tensor, boxes, flips, size
        ),
        "cut: roi_align, 1 torch thread": one_thread(
            lambda: crop_ops.cut_crops(tensor, boxes, flips, size)
        ),
        "cut: resized_crop per crop on float, bicubic (--interpolation bicubic)": lambda: (
            crop_ops.cut_crops_reference(tensor, boxes, flips, size, "bicubic")
        ),
        "cut: the same, 1 torch thread": one_thread(
            lambda: crop_ops.cut_crops_reference(tensor, boxes, flips, size, "bicubic")
        ),
        "normalise": lambda: crop_ops.normalise(cut_bicubic, info.mean, info.std),
        "channels_last copy": lambda: normalised.contiguous(memory_format=torch.channels_last),
        "encode: isfinite + topk + quantise + to numpy": encode,
    }
    fkd_times = {name: median_seconds(fn, repeats) for name, fn in fkd_steps.items()}
    for _ in range(repeats + 1):
        write()
    fkd_times["write: LabelStore.write_block (1-image block)"] = statistics.median(write_times[1:])
    fkd_batch = config.batch_size_on(CPU)
    fkd_times[f"teacher forward (M crops, batches of {fkd_batch})"] = median_seconds(
        lambda: [
            teacher.probabilities(
                part.contiguous(memory_format=torch.channels_last), config.temperature
            )
            for part in batch.split(fkd_batch)
        ],
        1,
    )

    dataset = FKDOriginalDataset(one, m, size, info.mean, info.std)
    pil = dataset.folder.loader(str(path))
    baseline_probs = probs.clone()
    counter = iter(range(10_000))

    def save() -> None:
        labels = fkd_original_labels(baseline_probs)
        target = workdir / f"baseline-{next(counter)}.tar"
        torch.save([torch.zeros(m, 4), torch.zeros(m, dtype=torch.bool), labels], target)

    def pil_crops() -> None:
        for _ in range(m):
            top, left, h, w = dataset.rrc.get_params(pil, dataset.rrc.scale, dataset.rrc.ratio)
            crop = TF.resized_crop(
                pil, top, left, h, w, dataset.rrc.size, dataset.rrc.interpolation
            )
            dataset.post(TF.hflip(crop))

    baseline_steps: dict[str, Callable[[], Any]] = {
        "decode (PIL open + convert RGB)": lambda: dataset.folder.loader(str(path)),
        "M x RandomResizedCrop bicubic + flip + ToTensor + Normalize (PIL)": pil_crops,
        "argsort top-5 loop": lambda: fkd_original_labels(baseline_probs),
        "argsort loop + torch.save": save,
    }
    baseline_times = {name: median_seconds(fn, repeats) for name, fn in baseline_steps.items()}
    return {
        "image": first.name,
        "shape": list(image.shape),
        "crops": m,
        "repeats": repeats,
        "fkd_s": fkd_times,
        "baseline_s": baseline_times,
    }


# Rounds -----------------------------------------------------------------------------------

TEACHER_ONLY = "teacher only"
ORIGINAL = "FKD original"
BICUBIC_KEY = "interpolation=bicubic (resized_crop per crop)"
FKD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(GenerateConfig)}


def round_order(index: int, passes: list[str]) -> list[str]:
    """ABBA: even rounds run ``passes`` in order, odd rounds in reverse."""
    return list(passes) if index % 2 == 0 else list(reversed(passes))


def pass_rate(record: dict[str, Any], name: str) -> float:
    """crops/s of pass ``name`` in one round's record."""
    if name == TEACHER_ONLY:
        return float(record["teacher_only"]["crops_per_s"])
    if name == ORIGINAL:
        return float(record["baseline"]["crops_per_s"])
    return float(record["fkd"][name]["crops_per_s"])


def teacher_share(run: dict[str, Any]) -> float:
    """Seconds in the teacher forward call over the run's wall (drift-free e2e/teacher)."""
    return float(run["stages_s"]["teacher forward"] / run["wall_s"])


def round_ratios(record: dict[str, Any]) -> dict[str, float]:
    """The ratios of one round, each between passes of that round."""
    teacher = record["teacher_only"]["crops_per_s"]
    base = record["baseline"]
    ratios: dict[str, float] = {}
    for key, run in record["fkd"].items():
        ratios[f"fkd/baseline [{key}]"] = run["crops_per_s"] / base["crops_per_s"]
    for key, run in record["fkd"].items():
        ratios[f"e2e/teacher-only [{key}]"] = run["crops_per_s"] / teacher
    for key, run in record["fkd"].items():
        ratios[f"e2e excluding setup/teacher-only [{key}]"] = (
            run["crops_per_s_excluding_setup"] / teacher
        )
    ratios["baseline/teacher-only"] = base["crops_per_s"] / teacher
    for key, run in record["fkd"].items():
        ratios[f"in-run teacher-forward share of wall [{key}]"] = teacher_share(run)
    ratios["in-run teacher-forward share of wall [FKD original]"] = teacher_share(base)
    return ratios


def spread(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "rounds": values,
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``run_fkd``/``run_baseline`` dict of per-field medians over the rounds.

    Numbers and dicts of numbers (stages, calls) are medians per key (a stage a
    round did not call counts 0 there); other fields come from the first round;
    ``crops_per_s_rounds`` and ``wall_s_rounds`` keep every round's value.
    """
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            names = dict.fromkeys(name for run in runs for name in run[key])
            out[key] = {
                name: statistics.median(float(run[key].get(name, 0.0)) for run in runs)
                for name in names
            }
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = statistics.median(run[key] for run in runs)
        else:
            out[key] = value
    for key in ("crops_per_s", "wall_s"):
        out[f"{key}_rounds"] = [run[key] for run in runs]
    return out


def pooled_rate(runs: list[dict[str, Any]]) -> float:
    """All rounds' crops over all rounds' wall (with ABBA, linear drift cancels in pairs)."""
    return sum(run["crops"] for run in runs) / sum(run["wall_s"] for run in runs)


# Checks -----------------------------------------------------------------------------------


def agreement(store_path: Path, probs: torch.Tensor, n: int, m: int) -> dict[str, float]:
    """Share of crops whose stored top-5 indices equal the teacher-only top-5 (same crops)."""
    stored = LabelStore.open(store_path).read_images(np.arange(n)).labels["index"]
    stored = torch.as_tensor(stored.reshape(n * m, -1).astype(np.int64))
    top = torch.topk(probs, stored.shape[-1], dim=-1).indices
    return {
        "top1_equal": float((stored[:, 0] == top[:, 0]).float().mean()),
        "top5_equal": float((stored == top).all(dim=-1).float().mean()),
    }


# Report -----------------------------------------------------------------------------------


def report(results: dict[str, Any]) -> None:
    rounds = results["rounds"]
    print(f"\n{len(rounds)} rounds, ABBA order (crops/s per pass, in the order run):")
    for record in rounds:
        rates = "; ".join(f"{name} {pass_rate(record, name):.2f}" for name in record["order"])
        print(f"  round {record['round'] + 1}: {rates}")
    print("ratios: median (min-max) [per round]")
    for name, values in results["ratio_spread"].items():
        per_round = ", ".join(f"{v:.3f}" for v in values["rounds"])
        print(
            f"  {name}: {values['median']:.3f} ({values['min']:.3f}-{values['max']:.3f}) "
            f"[{per_round}]"
        )
    for name, value in results["ratios"].items():
        if name not in results["ratio_spread"]:
            print(f"  {name}: {value:.3f}")
    teacher = results["teacher_only"]
    print(f"\nteacher only: {teacher['crops_per_s']:.2f} crops/s (median of rounds)")
    for key, run in results["fkd"].items():
        print(
            f"fkd e2e [{key}]: {run['crops_per_s']:.2f} crops/s, wall {run['wall_s']:.1f}s "
            "(medians of rounds; stages below too)"
        )
        for name, seconds in sorted(run["stages_s"].items(), key=lambda kv: -kv[1]):
            print(f"    {name:48s} {seconds:8.2f}s  {seconds / run['wall_s']:6.1%}")
    base = results["baseline"]
    print(
        f"FKD original: {base['crops_per_s']:.2f} crops/s, wall {base['wall_s']:.1f}s "
        f"(worker decode {base['worker_decode_s']:.2f}s, "
        f"worker crops {base['worker_crop_s']:.2f}s)"
    )
    for name, seconds in sorted(base["stages_s"].items(), key=lambda kv: -kv[1]):
        print(f"    {name:48s} {seconds:8.2f}s  {seconds / base['wall_s']:6.1%}")
    profile = results["profile_one_image"]
    print(f"one image ({profile['image']}, {profile['shape']}, M={profile['crops']}), ms:")
    for side in ("fkd_s", "baseline_s"):
        for name, seconds in profile[side].items():
            print(f"    {side[:-2]:8s} {name:64s} {seconds * 1000:9.1f}")
    calls = teacher["calls_interleaved"]
    for label, rate in calls["crops_per_s"].items():
        print(f"teacher call, {label} ({calls['sizes'][label]}): {rate:.2f} crops/s (median)")
    print(f"agreement with teacher-only labels (worst round): {results['agreement']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved (ABBA) rounds of every pass (default 3)"
    )
    parser.add_argument("--images", type=int, default=32, help="N images (default 32)")
    parser.add_argument("--crops", type=int, default=50, help="M crops per image (default 50)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"fkd batch (default: fkd's own on CPU, {CPU_BATCH_SIZE})",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=FKD_DEFAULTS["workers"],
        help=f"decode workers, both sides (default: fkd's, {FKD_DEFAULTS['workers']})",
    )
    parser.add_argument("--repeats", type=int, default=5, help="repeats of one-image steps")
    parser.add_argument(
        "--no-bicubic", action="store_true", help="skip the bicubic (per-crop) e2e passes"
    )
    parser.add_argument(
        "--call-rounds",
        type=int,
        default=3,
        help="interleaved rounds of the baseline's vs fkd's teacher call (default 3)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where temp files go")
    parser.add_argument("--out", type=Path, default=None, help="write all figures as JSON")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    workdir = Path(tempfile.mkdtemp(prefix="fkd-generate-bench-", dir=args.workdir))
    try:
        results = run_all(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(results)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
        print(f"wrote {args.out}")


def run_all(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    data = workdir / "data"
    images_info = write_image_folder(data, args.images)

    def config(out: str, **extra: Any) -> GenerateConfig:
        return GenerateConfig(
            data=data,
            out=str(workdir / out),
            teachers=(TEACHER,),
            crops_per_image=args.crops,
            batch_size=args.batch_size,
            workers=args.workers,
            device="cpu",
            **extra,
        )

    base_config = config("store-spec")  # never written: sizes the crops and the spec
    teacher = load_teacher(TEACHER)
    default_interpolation = crop_info(base_config, teacher).interpolation
    print(
        f"teacher {TEACHER}: input {teacher.info.input_size}, own interpolation "
        f"{teacher.info.interpolation}, generate's default crop interpolation "
        f"{default_interpolation}, torch threads {torch.get_num_threads()}, "
        f"workers {args.workers}, batch {base_config.batch_size_on(CPU)}",
        flush=True,
    )
    prepared = prepare(data, base_config)
    batches = teacher_batches(prepared, teacher, base_config)
    warm = batches[0][:WARMUP_CROPS].contiguous(memory_format=torch.channels_last)
    teacher.probabilities(warm, base_config.temperature)
    crops = sum(len(b) for b in batches)
    batch_sizes = [len(b) for b in batches]
    temperature = base_config.temperature

    paths = {"bilinear": "uint8 resized_crop per crop", "bicubic": "resized_crop per crop"}
    default_key = f"default: {default_interpolation} ({paths[default_interpolation]})"
    fkd_options: dict[str, dict[str, Any]] = {default_key: {}}
    if not args.no_bicubic and default_interpolation != "bicubic":
        fkd_options[BICUBIC_KEY] = {"interpolation": "bicubic"}
    # fkd next to the original and to teacher-only in every round, whichever the direction
    passes = [TEACHER_ONLY, default_key, ORIGINAL, *list(fkd_options)[1:]]

    rounds: list[dict[str, Any]] = []
    probs: torch.Tensor | None = None
    for r in range(args.rounds):
        record: dict[str, Any] = {"round": r, "order": round_order(r, passes), "fkd": {}}
        for name in record["order"]:
            if name == TEACHER_ONLY:
                seconds, probs = run_teacher_only(teacher, batches, temperature)
                record["teacher_only"] = {"seconds": seconds, "crops_per_s": crops / seconds}
            elif name == ORIGINAL:
                out = workdir / f"fkd-original-r{r}"
                record["baseline"] = run_baseline(data, out, args.crops, args.workers, temperature)
            else:
                tag = "default" if name == default_key else "bicubic"
                store = config(f"store-{tag}-r{r}", **fkd_options[name])
                record["fkd"][name] = run_fkd(store)
            print(
                f"round {r + 1}/{args.rounds}: {name}: {pass_rate(record, name):.2f} crops/s",
                flush=True,
            )
        record["ratios"] = round_ratios(record)
        record["agreement"] = agreement(
            workdir / f"store-default-r{r}", probs, args.images, args.crops
        )
        head = record["ratios"]
        print(
            f"round {r + 1}/{args.rounds}: fkd/original "
            f"{head[f'fkd/baseline [{default_key}]']:.3f}, e2e/teacher-only "
            f"{head[f'e2e/teacher-only [{default_key}]']:.3f}",
            flush=True,
        )
        rounds.append(record)

    calls = teacher_calls(teacher, batches, args.call_rounds, temperature)
    print(f"teacher calls, interleaved: {calls['crops_per_s']}", flush=True)
    for record in rounds:  # the teacher-call ratio comes from the calls, after the rounds
        for key, run in record["fkd"].items():
            record["ratios"][f"fkd/baseline, drift-corrected [{key}]"] = (
                teacher_share(run)
                * calls["fkd call/baseline call"]
                / teacher_share(record["baseline"])
            )
    del batches
    profile = profile_one_image(data, workdir, teacher, base_config, args.repeats)

    fkd_runs = {key: [record["fkd"][key] for record in rounds] for key in fkd_options}
    baseline_runs = [record["baseline"] for record in rounds]
    teacher_rates = [record["teacher_only"]["crops_per_s"] for record in rounds]
    ratio_spread = {
        name: spread([record["ratios"][name] for record in rounds]) for name in rounds[0]["ratios"]
    }
    pooled = {
        **{
            f"fkd/baseline, pooled over rounds [{key}]": pooled_rate(runs)
            / pooled_rate(baseline_runs)
            for key, runs in fkd_runs.items()
        },
        **{
            f"e2e/teacher-only, pooled over rounds [{key}]": pooled_rate(runs)
            * sum(record["teacher_only"]["seconds"] for record in rounds)
            / (crops * len(rounds))
            for key, runs in fkd_runs.items()
        },
    }
    worst = {
        name: min(record["agreement"][name] for record in rounds) for name in rounds[0]["agreement"]
    }
    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "cuda": torch.cuda.is_available(),
        },
        "params": {
            "rounds": args.rounds,
            "pass_order_even_rounds": passes,
            "images": args.images,
            "crops_per_image": args.crops,
            "batch_size": base_config.batch_size_on(CPU),
            "workers": args.workers,
            "teacher": TEACHER,
            "default_crop_interpolation": default_interpolation,
            "baseline_segment": BASELINE_SEGMENT,
        },
        "data": images_info,
        "teacher_only": {
            "crops": crops,
            "batches": batch_sizes,
            "seconds_rounds": [record["teacher_only"]["seconds"] for record in rounds],
            "crops_per_s_rounds": teacher_rates,
            "crops_per_s": statistics.median(teacher_rates),
            "calls_interleaved": calls,
        },
        "fkd": {key: median_run(runs) for key, runs in fkd_runs.items()},
        "baseline": median_run(baseline_runs),
        "rounds": rounds,
        "ratios": {
            **{name: values["median"] for name, values in ratio_spread.items()},
            **pooled,
            "fkd call/baseline call (interleaved)": calls["fkd call/baseline call"],
            "channels_last/NCHW, 50 crops (interleaved)": calls["channels_last/NCHW (50 crops)"],
            "channels_last model+input/input only, 50 crops (interleaved)": calls[
                "channels_last model+input/channels_last input (50 crops)"
            ],
        },
        "ratio_spread": ratio_spread,
        "agreement": worst,
        "profile_one_image": profile,
    }
    return results


if __name__ == "__main__":
    main()
