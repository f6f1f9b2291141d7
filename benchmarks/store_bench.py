"""Label-store benchmark: bytes per crop, write/read speed and label fidelity.

Writes one fkd label store per codec setting from the same teacher-like data
(``fkd.storage_formats.synthetic``), plus the original FKD per-image layout (one
``torch.save`` file per image) as the baseline, then prints bytes on disk per
crop, crops/s and fidelity.  Quote the ratios measured in one run; absolute
times depend on the machine.

    python benchmarks/store_bench.py [--images N] [--crops M] [--classes C] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from fkd.storage_formats import (
    BlockData,
    CodecSpec,
    CropSpec,
    LabelStore,
    Manifest,
    StoreSpec,
    TeacherInfo,
    get_codec,
    sample_boxes,
)
from fkd.storage_formats.crop_sampler import boxes_to_fractions
from fkd.storage_formats.synthetic import teacher_like_probs

BLOCK_SIZE = 256
DTYPES = ("uint8", "float16")
BASELINE = ("marginal_smoothing", 5, "float16")  # the FKD baseline stores these labels
FIDELITY_CHUNK = 32  # images decoded at a time when measuring fidelity


@dataclass(frozen=True)
class Case:
    """One fkd store to write: a label codec setting and a box sampler."""

    codec: str
    k: int
    dtype: str
    sampler: str = "fkd-rrc-v1"

    @property
    def codec_key(self) -> tuple[str, int, str]:
        return self.codec, self.k, self.dtype

    @property
    def dirname(self) -> str:
        return f"{self.codec}-k{self.k}-{self.dtype}-{self.sampler}"


@dataclass
class TeacherBlock:
    """Synthetic teacher output for one block of images."""

    probs: np.ndarray  # [n, M, C] float32
    height: np.ndarray  # [n]
    width: np.ndarray  # [n]
    boxes: np.ndarray  # [n, M, 4] fractions (top, left, height, width)
    flips: np.ndarray  # [n, M] bool


def benchmark_cases(num_classes: int) -> list[Case]:
    settings = [
        ("hard", 1),
        ("smoothing", 1),
        ("marginal_smoothing", 1),
        ("marginal_smoothing", 5),
        ("marginal_smoothing", 10),
        ("marginal_renorm", 5),
        ("full", num_classes),
    ]
    # hard stores no values, so its value dtype changes nothing: one case.
    cases = [Case(c, k, d) for c, k in settings for d in DTYPES if (c, d) != ("hard", "float16")]
    cases += [Case("marginal_smoothing", 5, d, "stored") for d in DTYPES]
    return [case for case in cases if codec_accepts(case, num_classes)]


def codec_accepts(case: Case, num_classes: int) -> bool:
    """Whether the library accepts this setting (``full`` may refuse uint8, for one)."""
    try:
        CodecSpec(case.codec, num_classes, k=case.k, value_dtype=case.dtype)
    except ValueError as exc:
        print(f"skipping {case.dirname}: {exc}")
        return False
    return True


def case_images(case: Case, args: argparse.Namespace) -> int:
    return min(args.images, args.full_images) if case.codec == "full" else args.images


def make_manifest(args: argparse.Namespace) -> Manifest:
    """ImageNet-like relative paths ``<wnid>/<wnid>_<i>.JPEG``, sizes and targets."""
    rng = np.random.default_rng([args.seed, 1])
    targets = rng.integers(0, args.classes, size=args.images)
    paths = [f"n{t:08d}/n{t:08d}_{i}.JPEG" for i, t in enumerate(targets)]
    return Manifest.build(paths, rng.integers(20_000, 300_000, size=args.images), targets)


def teacher_block(args: argparse.Namespace, start: int, stop: int) -> TeacherBlock:
    """Teacher-like probabilities, image sizes and fkd-rrc-v1 boxes of images [start, stop)."""
    rng = np.random.default_rng([args.seed, 2, start])
    count = stop - start
    probs = teacher_like_probs(rng, count, args.crops, args.classes)
    height = rng.integers(240, 800, size=count)
    width = rng.integers(240, 800, size=count)
    crops = CropSpec(crops_per_image=args.crops, seed=args.seed)
    pixels, flips = sample_boxes(crops, np.arange(start, stop), height, width)
    return TeacherBlock(probs, height, width, boxes_to_fractions(pixels, height, width), flips)


def create_store(
    root: Path, case: Case, args: argparse.Namespace, manifest: Manifest
) -> LabelStore:
    count = case_images(case, args)
    if count < len(manifest):
        idx = slice(0, count)
        manifest = Manifest.build(manifest.paths[idx], manifest.nbytes[idx], manifest.targets[idx])
    spec = StoreSpec(
        **manifest.spec_fields(),
        codec=CodecSpec(case.codec, args.classes, k=case.k, value_dtype=case.dtype),
        crops=CropSpec(crops_per_image=args.crops, seed=args.seed, sampler=case.sampler),
        teacher=TeacherInfo("synthetic-teacher-like", input_size=224),
        block_size=BLOCK_SIZE,
    )
    return LabelStore.create(root / case.dirname, spec, manifest)


def block_data(case: Case, data: TeacherBlock, labels: dict[str, np.ndarray], n: int) -> BlockData:
    """The first ``n`` images of a teacher block, as one store block."""
    stored = case.sampler == "stored"
    return BlockData(
        height=data.height[:n],
        width=data.width[:n],
        status=np.ones(n, dtype=np.uint8),
        errors=[""] * n,
        labels={name: values[:n] for name, values in labels.items()},
        boxes=data.boxes[:n] if stored else None,
        flips=data.flips[:n] if stored else None,
    )


def fidelity_sums(case: Case, num_classes: int, probs: np.ndarray, labels: dict) -> np.ndarray:
    """Per-crop sums, q the decoded label: finite KL(p||q), crops where it is infinite
    (q is 0 on a class the teacher gives mass), KL(q||p) and top-1 agreement."""
    codec = get_codec(CodecSpec(case.codec, num_classes, k=case.k, value_dtype=case.dtype))
    sums = np.zeros(4)
    for lo in range(0, len(probs), FIDELITY_CHUNK):
        p = probs[lo : lo + FIDELITY_CHUNK].astype(np.float64)
        q = codec.decode({name: v[lo : lo + FIDELITY_CHUNK] for name, v in labels.items()})
        q = q.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio = np.log(p) - np.log(q)
            kl = np.sum(p * log_ratio, axis=-1)
            sums[2] += np.sum(np.where(q > 0, -q * log_ratio, 0.0))
        finite = np.isfinite(kl)
        sums[0] += kl[finite].sum()
        sums[1] += np.count_nonzero(~finite)
        sums[3] += np.sum(p.argmax(-1) == q.argmax(-1))
    return sums


def baseline_file(root: Path, image_path: str) -> Path:
    """FKD's name for an image's soft-label file: ``<root>/<class>/<stem>.tar``."""
    return (root / image_path).with_suffix(".tar")


def write_baseline_block(
    root: Path, paths: tuple[str, ...], data: TeacherBlock, labels: dict[str, np.ndarray]
) -> None:
    """One ``torch.save([coords, flip, labels])`` per image, as the original FKD did."""
    for i, image_path in enumerate(paths):
        target = baseline_file(root, image_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        coords = torch.from_numpy(data.boxes[i].astype(np.float16))  # (M, 4)
        flip = torch.from_numpy(data.flips[i])  # (M,)
        index = labels["index"][i].astype(np.float16)  # FKD kept indices as float16 too
        label = torch.from_numpy(np.stack([index, labels["value"][i]], axis=1))  # (M, 2, K)
        torch.save([coords, flip, label], target)


def read_baseline(root: Path, paths: tuple[str, ...], order: np.ndarray) -> float:
    """Seconds to load every image's file in ``order`` (one ``torch.load`` each)."""
    start = time.perf_counter()
    for i in order:
        coords, flip, label = torch.load(baseline_file(root, paths[i]), weights_only=True)
    elapsed = time.perf_counter() - start
    assert label.dtype == torch.float16 and coords.shape[0] == flip.shape[0] == label.shape[0]
    return elapsed


def read_order(args: argparse.Namespace, images: int) -> np.ndarray:
    """The images a per-image read visits: a random sample, in random order, as a loader."""
    rng = np.random.default_rng([args.seed, 3])
    return rng.permutation(images)[: args.read_images]


def read_store(path: Path, order: np.ndarray, images: int) -> tuple[float, float]:
    """Seconds for per-image ``read_images([i])`` in ``order``, and for one call on all."""
    store = LabelStore.open(path)
    start = time.perf_counter()
    for i in order:
        batch = store.read_images([int(i)])
    per_image = time.perf_counter() - start
    assert batch.boxes.shape[:2] == batch.flips.shape
    start = time.perf_counter()
    store.read_images(np.arange(images))
    return per_image, time.perf_counter() - start


def disk_usage(root: Path) -> dict[str, int]:
    """Apparent and allocated bytes of every file under ``root``, split by array kind."""
    usage: dict[str, int] = defaultdict(int)
    for dirpath, _, files in os.walk(root):
        top = Path(dirpath).relative_to(root).parts[:1]
        kind = top[0] if top else ""
        if kind.startswith("label_"):
            kind = "labels"
        elif kind.startswith("crop_"):
            kind = "boxes"
        for name in files:
            st = os.stat(os.path.join(dirpath, name))
            usage["files"] += 1
            usage["apparent"] += st.st_size
            usage["allocated"] += st.st_blocks * 512
            if kind in ("labels", "boxes"):
                usage[f"{kind}_apparent"] += st.st_size
    return dict(usage)


def write_everything(
    args: argparse.Namespace, cases: list[Case], root: Path, manifest: Manifest
) -> tuple[dict[Case, dict[str, Any]], dict[str, Any]]:
    """Write every fkd store and the FKD baseline block by block from shared teacher data."""
    stores = {case: create_store(root, case, args, manifest) for case in cases}
    stats: dict[Case, dict[str, Any]] = {case: defaultdict(float) for case in cases}
    encode_s: dict[tuple[str, int, str], float] = defaultdict(float)
    baseline: dict[str, Any] = {"write_s": 0.0}
    num_blocks = -(-args.images // BLOCK_SIZE)
    for block in range(num_blocks):
        start, stop = block * BLOCK_SIZE, min((block + 1) * BLOCK_SIZE, args.images)
        data = teacher_block(args, start, stop)
        encoded: dict[tuple[str, int, str], dict[str, np.ndarray]] = {}
        for case, store in stores.items():
            if block >= store.spec.num_blocks:
                continue
            if case.codec_key not in encoded:
                codec = get_codec(store.spec.codec)
                t0 = time.perf_counter()
                encoded[case.codec_key] = codec.encode(data.probs)
                encode_s[case.codec_key] += time.perf_counter() - t0
            labels = encoded[case.codec_key]
            n = store.spec.block_range(block)[1] - start
            t0 = time.perf_counter()
            store.write_block(block, block_data(case, data, labels, n))
            stats[case]["write_s"] += time.perf_counter() - t0
            n_fid = min(n, max(args.fidelity_images - start, 0))
            if n_fid:
                part = {name: v[:n_fid] for name, v in labels.items()}
                sums = fidelity_sums(case, args.classes, data.probs[:n_fid], part)
                stats[case]["fidelity_sums"] += sums
                stats[case]["fidelity_crops"] += n_fid * args.crops
        t0 = time.perf_counter()
        paths = manifest.paths[start:stop]
        write_baseline_block(root / "fkd-original", paths, data, encoded[BASELINE])
        baseline["write_s"] += time.perf_counter() - t0
        print(f"  wrote block {block + 1}/{num_blocks}", flush=True)
    for case in cases:
        stats[case]["encode_s"] = encode_s[case.codec_key]
    return stats, baseline


def collect_case(case: Case, args: argparse.Namespace, root: Path, stats: dict) -> dict[str, Any]:
    """Every figure of one fkd store: sizes, speeds and fidelity, per crop where it applies."""
    images = case_images(case, args)
    crops = images * args.crops
    order = read_order(args, images)
    read_image_s, read_batch_s = read_store(root / case.dirname, order, images)
    usage = disk_usage(root / case.dirname)
    if stats["fidelity_crops"]:
        kl_sum, infinite, reverse_kl, agree = stats["fidelity_sums"] / stats["fidelity_crops"]
    else:  # --fidelity-images 0
        kl_sum, infinite, reverse_kl, agree = np.full(4, np.nan)
    return {
        **asdict(case),
        "images": images,
        "crops": crops,
        "files": usage["files"],
        "bytes_per_crop": usage["apparent"] / crops,
        "allocated_per_crop": usage["allocated"] / crops,
        "label_bytes_per_crop": usage.get("labels_apparent", 0) / crops,
        "box_bytes_per_crop": usage.get("boxes_apparent", 0) / crops,
        "encode_crops_per_s": crops / stats["encode_s"],
        "write_crops_per_s": crops / stats["write_s"],
        "read_image_crops_per_s": len(order) * args.crops / read_image_s,
        "read_batch_crops_per_s": crops / read_batch_s,
        "kl_teacher_to_label_finite": None if not infinite < 1 else kl_sum / (1 - infinite),
        "kl_infinite_share": infinite,
        "kl_label_to_teacher": reverse_kl,
        "top1_agreement": agree,
        "fidelity_crops": int(stats["fidelity_crops"]),
    }


def collect_baseline(args: argparse.Namespace, root: Path, manifest: Manifest, write_s: float):
    crops = args.images * args.crops
    order = read_order(args, args.images)
    read_s = read_baseline(root, manifest.paths, order)
    usage = disk_usage(root)
    return {
        "layout": "FKD torch.save per image, marginal_smoothing K=5, float16",
        "images": args.images,
        "crops": crops,
        "files": usage["files"],
        "bytes_per_crop": usage["apparent"] / crops,
        "allocated_per_crop": usage["allocated"] / crops,
        "write_crops_per_s": crops / write_s,
        "read_image_crops_per_s": len(order) * args.crops / read_s,
    }


def headline_ratios(results: list[dict[str, Any]], baseline: dict[str, Any]) -> dict[str, Any]:
    """fkd over FKD at marginal_smoothing K=5 (derived boxes), per value dtype."""
    ratios = {}
    for row in results:
        if (row["codec"], row["k"], row["sampler"]) != ("marginal_smoothing", 5, "fkd-rrc-v1"):
            continue
        ratios[row["dtype"]] = {
            "bytes": row["bytes_per_crop"] / baseline["bytes_per_crop"],
            "allocated": row["allocated_per_crop"] / baseline["allocated_per_crop"],
            "write_speed": row["write_crops_per_s"] / baseline["write_crops_per_s"],
            "read_image_speed": row["read_image_crops_per_s"] / baseline["read_image_crops_per_s"],
            "read_batch_vs_fkd_per_image": (
                row["read_batch_crops_per_s"] / baseline["read_image_crops_per_s"]
            ),
        }
    return ratios


def print_report(results: list[dict], baseline: dict, ratios: dict, args: argparse.Namespace):
    print(
        f"\nN={args.images} images, M={args.crops} crops, C={args.classes} classes "
        f"(full at N={min(args.images, args.full_images)}; fidelity on the first "
        f"{args.fidelity_images} images; per-image reads of {args.read_images} random "
        "images)\n"
    )
    print(
        f"{'codec':<20}{'K':>5} {'dtype':<8}{'boxes':<8}{'B/crop':>8}{'alloc':>8}"
        f"{'labels':>8}{'boxes':>7}{'KL(p||q)':>10}{'q=0':>7}{'KL(q||p)':>10}{'top1':>7}"
    )
    for r in results:
        dtype = "-" if r["codec"] == "hard" else r["dtype"]
        boxes = "stored" if r["sampler"] == "stored" else "derived"
        finite_kl = r["kl_teacher_to_label_finite"]
        kl = "-" if finite_kl is None else f"{finite_kl:.4f}"
        print(
            f"{r['codec']:<20}{r['k']:>5} {dtype:<8}{boxes:<8}{r['bytes_per_crop']:>8.2f}"
            f"{r['allocated_per_crop']:>8.2f}{r['label_bytes_per_crop']:>8.2f}"
            f"{r['box_bytes_per_crop']:>7.2f}{kl:>10}{r['kl_infinite_share']:>7.1%}"
            f"{r['kl_label_to_teacher']:>10.4f}{r['top1_agreement']:>7.3f}"
        )
    b = baseline
    print(
        f"{'FKD original (K=5)':<26}{'float16':<8}{'stored':<8}{b['bytes_per_crop']:>8.2f}"
        f"{b['allocated_per_crop']:>8.2f}  ({b['files']} files)"
    )

    print("KL(p||q): nats, mean over crops where it is finite; q=0: share of crops where it is")
    print("infinite (the label gives 0 to a class the teacher does not); top1: argmax agreement")
    print(f"\n{'crops/s':<44}{'encode':>10}{'write':>10}{'read 1/img':>12}{'read all':>10}")
    for r in results:
        label = f"{r['codec']} K={r['k']} {r['dtype']} {r['sampler']}"
        print(
            f"{label:<44}{r['encode_crops_per_s']:>10.0f}{r['write_crops_per_s']:>10.0f}"
            f"{r['read_image_crops_per_s']:>12.0f}{r['read_batch_crops_per_s']:>10.0f}"
        )
    print(
        f"{'FKD original K=5 float16':<44}{'-':>10}{b['write_crops_per_s']:>10.0f}"
        f"{b['read_image_crops_per_s']:>12.0f}{'-':>10}"
    )

    print("\nfkd / FKD original at marginal_smoothing K=5 (same run, same data):")
    for dtype, r in ratios.items():
        print(
            f"  {dtype:<8} bytes {r['bytes']:.3f}  allocated {r['allocated']:.3f}  "
            f"write speed x{r['write_speed']:.2f}  per-image read speed "
            f"x{r['read_image_speed']:.2f}  batched read vs FKD per-image "
            f"x{r['read_batch_vs_fkd_per_image']:.1f}"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1024, help="images N (default 1024)")
    parser.add_argument("--crops", type=int, default=200, help="crops per image M (default 200)")
    parser.add_argument("--classes", type=int, default=1000, help="classes C (default 1000)")
    parser.add_argument("--full-images", type=int, default=256, help="N for the full codec")
    parser.add_argument(
        "--fidelity-images",
        type=int,
        default=256,
        help="fidelity is measured on the first this many images",
    )
    parser.add_argument(
        "--read-images",
        type=int,
        default=512,
        help="per-image reads visit this many random images (default 512)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="where to write (a temp dir)")
    parser.add_argument("--out", type=Path, default=None, help="also write every figure as JSON")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cases = benchmark_cases(args.classes)
    manifest = make_manifest(args)
    root = Path(tempfile.mkdtemp(prefix="fkd-store-bench-", dir=args.workdir))
    try:
        print(f"writing {len(cases)} fkd stores and the FKD baseline under {root}")
        stats, baseline_write = write_everything(args, cases, root, manifest)
        results = [collect_case(case, args, root, stats[case]) for case in cases]
        baseline_root = root / "fkd-original"
        baseline = collect_baseline(args, baseline_root, manifest, baseline_write["write_s"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratios = headline_ratios(results, baseline)
    print_report(results, baseline, ratios, args)
    if args.out:
        machine = {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "numpy": np.__version__,
            "zarr": zarr.__version__,
            "torch": torch.__version__,
        }
        report = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "machine": machine,
            "fkd": results,
            "fkd_original": baseline,
            "ratios": ratios,
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
