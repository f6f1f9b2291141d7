"""``GenerateConfig``: every option of ``fkd generate``, declared once and checked once.

Each field carries its command-line flag, help, range and choices (``fkd.options``);
``fkd generate``'s click options are built from them. ``__post_init__`` checks the
values with the store spec's own validators, raising ``OptionError`` naming the flag.
Torch-free and light to import (the spec is imported when a config is made), so the
command line refuses a bad value before torch loads; only ``--topk`` against the
teacher's class count waits for the teacher.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fkd import shared_options as shared
from fkd.crop_budget import crops_for_epochs
from fkd.exceptions import OptionError
from fkd.options import (
    argument,
    check_options,
    names_from,
    option,
    option_check,
    parse_two,
    probability,
)

if TYPE_CHECKING:
    import torch

# Crops per teacher forward when --batch-size is not given.  A GPU wants large
# batches; on CPU small ones are faster per crop, since a layer's activations stay
# in cache: EfficientNet-Lite0 at 224 px ran 2.5-3.2x faster per crop at 4 than at
# 256, with 1 and 2 threads (benchmarks/teacher_batch_bench.py, docs/benchmarks.md).
# Tiny teachers on tiny inputs prefer more (the demo's 32 px CNN: 64).
CPU_BATCH_SIZE = 4
DEFAULT_CROPS_PER_IMAGE = 200
MAX_CROPS_PER_IMAGE = 65536
ACCELERATOR_BATCH_SIZE = 256
MAX_REDO_BLOCKS = 1_000_000


def parse_shard(text: str) -> tuple[int, int]:
    """``0/4`` -> (0, 4)."""
    return parse_two(text, "/", int, "i/n like 0/4")


def parse_blocks(text: str) -> tuple[int, ...]:
    """``3,5,7-9`` -> (3, 5, 7, 8, 9): sorted, without repeats."""
    blocks: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise ValueError(f"expected block numbers like 3,5 or 7-9, got {text!r}") from None
        if low < 0 or high < low:
            raise ValueError(f"{part.strip()!r}: block numbers are >= 0 and ranges run low-high")
        if high - low + 1 + len(blocks) > MAX_REDO_BLOCKS:
            raise ValueError(
                f"more than {MAX_REDO_BLOCKS} blocks; to label every block anew use --overwrite"
            )
        blocks.update(range(low, high + 1))
    return tuple(sorted(blocks))


def _default_max_pixels() -> int:
    from fkd.images import DEFAULT_MAX_PIXELS

    return DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class GenerateConfig:
    """Every option of ``fkd generate`` (see ``fkd generate --help``)."""

    data: Path = argument("DATA")
    out: str = option(
        "--out",
        metavar="STORE",
        store=True,
        help="The label store to create or resume (a directory, e.g. labels.zarr).",
    )
    teachers: tuple[str, ...] = shared.teachers()
    weights: tuple[str | None, ...] = shared.weights()
    crops_per_image: int = option(  # None until __post_init__: 200, or --for-epochs's M
        "--crops-per-image",
        "-m",
        default=None,
        cli_default=DEFAULT_CROPS_PER_IMAGE,
        low=1,
        high=MAX_CROPS_PER_IMAGE,
        help="M: random-resized crops labelled per image (or let --for-epochs size it).",
    )
    for_epochs: int | None = option(
        "--for-epochs",
        default=None,
        low=1,
        metavar="E",
        help="Size M for a student run of E crop-epochs instead of giving -m: M = N x "
        "ceil(ceil(E/N) / R), with N = --crops-per-visit and R = --reuse, so the run uses "
        "no stored crop more than R times (R = 1: every crop fresh, as online KD's student "
        "sees). See docs/scaling.md.",
    )
    crops_per_visit: int = option(
        "--crops-per-visit",
        "-n",
        default=4,
        low=1,
        high=MAX_CROPS_PER_IMAGE,
        help="N: crops per visit of the student run (fkd train --crops-per-visit) that "
        "--for-epochs and --plan size the store for.",
    )
    reuse: int = option(
        "--reuse",
        default=1,
        low=1,
        metavar="R",
        help="With --for-epochs: the most times the student run may use each stored crop "
        "(a store R times smaller).",
    )
    scale: tuple[float, float] = shared.crop_scale(
        "RandomResizedCrop area range, as fractions of the image."
    )
    ratio: tuple[float, float] = shared.crop_ratio(
        "RandomResizedCrop aspect-ratio range (width/height)."
    )
    flip_prob: float = probability(
        "--flip-prob",
        0.5,
        "Probability that a crop is mirrored left to right.",
    )
    seed: int = option(
        "--seed",
        default=0,
        low=0,
        high=2**64 - 1,
        help="Seed of the counter-based crop sampler (boxes depend on seed, image, crop).",
    )
    label_type: str = option(
        "--label-type",
        default="marginal_smoothing",
        choices=names_from("fkd.storage_formats.label_codecs", "codec_names"),
        help="Label codec: how each crop's teacher distribution is stored (docs/format.md).",
    )
    topk: int = option(
        "--topk", default=5, low=1, help="K: classes kept per crop by the top-K codecs."
    )
    temperature: float = option(
        "--temperature", default=1.0, help="Softmax temperature applied to the teacher's logits."
    )
    value_dtype: str = option(
        "--value-dtype",
        default="uint8",
        choices=names_from("fkd.storage_formats.spec", "VALUE_DTYPES"),
        help="Stored precision of probabilities (uint8 costs ~5 B/crop less at "
        "top-5; see docs/benchmarks.md for the fidelity trade-off).",
    )
    input_size: int | None = option(
        "--input-size",
        default=None,
        low=1,
        help="Teacher input size in pixels (default: the teacher's own).",
    )
    interpolation: str | None = option(
        "--interpolation",
        default=None,
        choices=names_from("fkd.storage_formats.spec", "INTERPOLATIONS"),
        help="Crop resampling [default: bilinear, the device's fast path: uint8 resize "
        "per crop on CPU, one roi_align call per image on a GPU]. bicubic resizes crop "
        "by crop with torchvision's exact path (slower; --check-fidelity measures the "
        "difference). Recorded in the store as teacher.interpolation.",
    )
    batch_size: int | None = option(
        "--batch-size",
        default=None,
        low=1,
        help="Crops per teacher forward pass [default: 256 on a GPU, 4 on CPU, where "
        "small batches stay in cache: about 3x faster per crop at 224 px; benchmarks/"
        "teacher_batch_bench.py measures a teacher].",
    )
    block_size: int = option(
        "--block-size",
        default=256,
        low=1,
        high=65536,
        help="Images per block: the unit of work, resume and sharding.",
    )
    device: str = shared.device()
    workers: int = shared.decode_workers()
    shard: tuple[int, int] = option(
        "--shard",
        default=(0, 1),
        metavar="I/N",
        parse=parse_shard,
        format=lambda shard: f"{shard[0]}/{shard[1]}",
        help="Take only blocks b with b mod N == I (SLURM arrays, torchrun ranks).",
    )
    overwrite: bool = option(
        "--overwrite", default=False, help="Replace an existing store instead of resuming."
    )
    redo_blocks: tuple[int, ...] = option(
        "--redo-blocks",
        default=(),
        metavar="B[,B-C...]",
        parse=parse_blocks,
        help="Label exactly these blocks again, committed or not (e.g. 3,5 or 7-9), with "
        "the same arguments as the run that made the store: the repair for blocks `fkd "
        "verify` finds damaged. Other blocks are left as they are.",
    )
    hash_files: bool = option(
        "--hash-files",
        default=False,
        help="Record a sha256 of every image file in the manifest (slower scan).",
    )
    max_failures: float = probability(
        "--max-failures",
        0.01,
        "Fraction of images allowed to fail decoding before the exit status is 1.",
    )
    max_pixels: int = field(default_factory=_default_max_pixels)
    reference: str | None = option(
        "--reference",
        default=None,
        metavar="STORE",
        store=True,
        help="Reuse the crop boxes and flips of an existing store (same images), so a "
        "second teacher labels the very same crops.",
    )
    check_fidelity: int = option(
        "--check-fidelity",
        default=0,
        low=0,
        metavar="N",
        help="After labelling, run N images through the exact reference crop "
        "path and report KL(reference || fast path), KL(teacher || stored label) and "
        "top-1 agreement.",
    )

    def __post_init__(self) -> None:
        check_options(self)
        self._size_crops_per_image()
        if self.weights and len(self.weights) != len(self.teachers):
            raise OptionError(
                "--weights",
                f"{len(self.weights)} --weights for {len(self.teachers)} --teacher; "
                "give one per teacher",
            )
        if self.redo_blocks and self.overwrite:
            raise OptionError(
                "--redo-blocks", "--overwrite labels every block anew; give one of them"
            )
        index, count = self.shard
        if not (count >= 1 and 0 <= index < count):
            raise OptionError("--shard", f"expected 0 <= i < n, got '{index}/{count}'")
        self._check_with_the_spec()

    def _size_crops_per_image(self) -> None:
        """M: as given, 200, or sized by --for-epochs (``fkd.crop_budget``).

        An M that --for-epochs also sizes is refused unless the two agree, so that a
        config rebuilt from its own fields (``dataclasses.replace``) stays valid.
        """
        m = self.crops_per_image
        if self.for_epochs is not None:
            sized = crops_for_epochs(self.for_epochs, self.crops_per_visit, self.reuse)
            if m is not None and m != sized:
                raise OptionError(
                    "--for-epochs",
                    "--for-epochs sizes M itself; give --for-epochs or -m/--crops-per-image, "
                    "not both",
                )
            if sized > MAX_CROPS_PER_IMAGE:
                raise OptionError(
                    "--for-epochs",
                    f"{self.for_epochs} crop-epochs at --crops-per-visit {self.crops_per_visit} "
                    f"and --reuse {self.reuse} need M = {sized}, more than a store holds "
                    f"({MAX_CROPS_PER_IMAGE}); accept more reuse (a larger --reuse)",
                )
            m = sized
        object.__setattr__(self, "crops_per_image", DEFAULT_CROPS_PER_IMAGE if m is None else m)

    def _check_with_the_spec(self) -> None:
        """The store spec's own checks of the values it will record."""
        from fkd.storage_formats import CodecSpec, CropSpec, TeacherInfo
        from fkd.storage_formats.label_codecs import codec_spec
        from fkd.storage_formats.spec import MAX_CLASSES

        option_check("--scale", lambda: CropSpec(self.crops_per_image, scale=self.scale))
        option_check("--ratio", lambda: CropSpec(self.crops_per_image, ratio=self.ratio))
        option_check("--temperature", lambda: CodecSpec("hard", 2, temperature=self.temperature))
        k = min(self.topk, MAX_CLASSES)
        option_check(
            "--value-dtype",
            lambda: codec_spec(self.label_type, MAX_CLASSES, k, 1.0, self.value_dtype),
        )
        if self.input_size is not None:
            input_size = self.input_size
            option_check("--input-size", lambda: TeacherInfo("-", input_size))

    def batch_size_on(self, device: torch.device) -> int:
        """Crops per teacher forward on ``device``: ``batch_size``, or the device's default."""
        if self.batch_size is not None:
            return self.batch_size
        return CPU_BATCH_SIZE if device.type == "cpu" else ACCELERATOR_BATCH_SIZE


@dataclass(frozen=True)
class GenerateRun:
    """How ``fkd generate`` runs (one process, a dask cluster, or only a plan) and what it
    prints: the labels do not depend on these."""

    scheduler: str | None = option(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="Run the blocks as tasks on the running dask.distributed scheduler at ADDRESS "
        "(e.g. tcp://node01:8786; one task per uncommitted block of the shard; workers read "
        "DATA and write STORE on the shared file system). See docs/scaling.md.",
    )
    cluster: str | None = option(
        "--cluster",
        default=None,
        metavar="local:K",
        help="Run the blocks on a dask cluster of K worker processes started on this machine "
        "(one thread each; with CUDA GPUs, one GPU per worker). 'local' alone: one worker per "
        "GPU, else per CPU core. Each dask worker decodes inline unless --workers is given.",
    )
    plan: bool = option(
        "--plan",
        default=False,
        help="Write nothing: print the image and block counts, the expected store size and "
        "teacher-hours, measured on a few crops of the first images on --device.",
    )
    plan_crops_per_s: float | None = option(
        "--plan-crops-per-s",
        default=None,
        metavar="X",
        low=0,
        low_open=True,
        help="With --plan: assume the teacher labels X crops/s instead of measuring it.",
    )
    quiet: bool = option("--quiet", "-q", default=False, help="No progress bar.")
    as_json: bool = option(
        "--json", default=False, help="Print the final summary as one line of JSON."
    )

    def __post_init__(self) -> None:
        if self.plan_crops_per_s is not None and not self.plan:
            raise OptionError("--plan-crops-per-s", "only applies with --plan")
        if self.scheduler is not None and self.cluster is not None:
            raise OptionError(
                "--cluster",
                "give --scheduler (a running cluster) or --cluster (start one here), not both",
            )


__all__ = [
    "ACCELERATOR_BATCH_SIZE",
    "CPU_BATCH_SIZE",
    "DEFAULT_CROPS_PER_IMAGE",
    "GenerateConfig",
    "GenerateRun",
    "parse_blocks",
    "parse_shard",
]
