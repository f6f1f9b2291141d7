"""``fkd generate``: label M random-resized crops of every image with a teacher, into a store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from fkd.cli.options import (
    RegistryChoice,
    check_option,
    device_options,
    library_errors,
    parse_pair,
    parse_shard,
    store_location,
    teacher_options,
)
from fkd.cli.stopping import stops_cleanly

if TYPE_CHECKING:
    from fkd.generate import GenerateConfig, GenerateSummary


def _codec_names() -> tuple[str, ...]:
    """The registered label codecs (imported when --label-type is used or its help shown)."""
    from fkd.storage_formats.label_codecs import codec_names

    return codec_names()


@click.command("generate")
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--out",
    required=True,
    metavar="STORE",
    callback=store_location,
    help="The label store to create or resume (a directory, e.g. labels.zarr).",
)
@teacher_options
@click.option(
    "--crops-per-image",
    "-m",
    type=click.IntRange(1, 65536),
    default=200,
    show_default=True,
    help="M: random-resized crops labelled per image.",
)
@click.option(
    "--scale",
    default="0.08,1.0",
    show_default=True,
    help="RandomResizedCrop area range, as fractions of the image.",
)
@click.option(
    "--ratio",
    default=f"{3 / 4},{4 / 3}",
    show_default=True,
    help="RandomResizedCrop aspect-ratio range (width/height).",
)
@click.option(
    "--flip-prob",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Probability that a crop is mirrored left to right.",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**64 - 1),
    default=0,
    show_default=True,
    help="Seed of the counter-based crop sampler (boxes depend on seed, image, crop).",
)
@click.option(
    "--label-type",
    type=RegistryChoice(_codec_names),
    default="marginal_smoothing",
    show_default=True,
    help="Label codec: how each crop's teacher distribution is stored (docs/format.md).",
)
@click.option(
    "--topk",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="K: classes kept per crop by the top-K codecs.",
)
@click.option(
    "--temperature",
    type=float,
    default=1.0,
    show_default=True,
    help="Softmax temperature applied to the teacher's logits.",
)
@click.option(
    "--value-dtype",
    type=click.Choice(["uint8", "float16"]),
    default="uint8",
    show_default=True,
    help="Stored precision of probabilities (uint8 costs ~5 B/crop less at "
    "top-5; see docs/benchmarks.md for the fidelity trade-off).",
)
@click.option(
    "--input-size",
    type=click.IntRange(min=1),
    default=None,
    help="Teacher input size in pixels (default: the teacher's own).",
)
@click.option(
    "--interpolation",
    type=click.Choice(["bilinear", "bicubic"]),
    default=None,
    help="Crop resampling [default: bilinear, the device's fast path: uint8 resize per "
    "crop on CPU, one roi_align call per image on a GPU]. bicubic resizes crop "
    "by crop with torchvision's exact path (slower; --check-fidelity measures the "
    "difference). Recorded in the store as teacher.interpolation.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Crops per teacher forward pass [default: 256 on a GPU, 4 on CPU, where small "
    "batches stay in cache: about 3x faster per crop at 224 px; benchmarks/"
    "teacher_batch_bench.py measures a teacher].",
)
@click.option(
    "--block-size",
    type=click.IntRange(1, 65536),
    default=256,
    show_default=True,
    help="Images per block: the unit of work, resume and sharding.",
)
@device_options
@click.option(
    "--shard",
    default="0/1",
    show_default=True,
    metavar="I/N",
    help="Take only blocks b with b mod N == I (SLURM arrays, torchrun ranks).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing store instead of resuming.")
@click.option(
    "--redo-blocks",
    callback=lambda _ctx, _param, text: parse_blocks(text),
    default=None,
    metavar="B[,B-C...]",
    help="Label exactly these blocks again, committed or not (e.g. 3,5 or 7-9), with the "
    "same arguments as the run that made the store: the repair for blocks `fkd verify` "
    "finds damaged. Other blocks are left as they are.",
)
@click.option(
    "--hash-files",
    is_flag=True,
    help="Record a sha256 of every image file in the manifest (slower scan).",
)
@click.option(
    "--max-failures",
    type=click.FloatRange(0, 1),
    default=0.01,
    show_default=True,
    help="Fraction of images allowed to fail decoding before the exit status is 1.",
)
@click.option(
    "--reference",
    default=None,
    metavar="STORE",
    callback=store_location,
    help="Reuse the crop boxes and flips of an existing store (same images), so a "
    "second teacher labels the very same crops.",
)
@click.option(
    "--check-fidelity",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="N",
    help="After labelling, run N images through the exact reference crop "
    "path and report KL(reference || fast path), KL(teacher || stored label) and "
    "top-1 agreement.",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Run the blocks as tasks on the running dask.distributed scheduler at ADDRESS "
    "(e.g. tcp://node01:8786; one task per uncommitted block of the shard; workers read "
    "DATA and write STORE on the shared file system). See docs/scaling.md.",
)
@click.option(
    "--cluster",
    default=None,
    metavar="local:K",
    help="Run the blocks on a dask cluster of K worker processes started on this machine "
    "(one thread each; with CUDA GPUs, one GPU per worker). 'local' alone: one worker per "
    "GPU, else per CPU core. Each dask worker decodes inline unless --workers is given.",
)
@click.option(
    "--plan",
    is_flag=True,
    help="Write nothing: print the image and block counts, the expected store size and "
    "teacher-hours, measured on a few crops of the first images on --device.",
)
@click.option(
    "--plan-crops-per-s",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="X",
    help="With --plan: assume the teacher labels X crops/s instead of measuring it.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the final summary as one line of JSON."
)
@stops_cleanly("the committed blocks are kept; re-run the same command to resume from them.")
@library_errors
def generate_command(
    data: Path,
    out: str,
    teachers: tuple[str, ...],
    weights: tuple[str, ...],
    crops_per_image: int,
    scale: str,
    ratio: str,
    flip_prob: float,
    seed: int,
    label_type: str,
    topk: int,
    temperature: float,
    value_dtype: str,
    input_size: int | None,
    interpolation: str | None,
    batch_size: int | None,
    block_size: int,
    device: str,
    workers: int,
    shard: str,
    overwrite: bool,
    redo_blocks: tuple[int, ...],
    hash_files: bool,
    max_failures: float,
    reference: str | None,
    check_fidelity: int,
    scheduler: str | None,
    cluster: str | None,
    plan: bool,
    plan_crops_per_s: float | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Label M random-resized crops of every image in DATA with a teacher, into STORE.

    DATA is an ImageFolder tree (class subfolders; DATA/train is used when it
    exists) or a text/CSV file listing relative paths with optional labels.
    Re-running the same command resumes: committed blocks are skipped.
    """
    if weights and len(weights) != len(teachers):
        raise click.BadParameter(
            f"{len(weights)} --weights for {len(teachers)} --teacher; give one per teacher",
            param_hint="--weights",
        )
    if plan_crops_per_s is not None and not plan:
        raise click.BadParameter("only applies with --plan", param_hint="--plan-crops-per-s")
    if scheduler is not None and cluster is not None:
        raise click.BadParameter(
            "give --scheduler (a running cluster) or --cluster (start one here), not both",
            param_hint="--cluster",
        )
    if redo_blocks and overwrite:
        raise click.BadParameter(
            "--overwrite labels every block anew; give one of them", param_hint="--redo-blocks"
        )
    crop_range = parse_pair(scale, "--scale"), parse_pair(ratio, "--ratio")
    check_options(
        crops_per_image, crop_range, label_type, topk, temperature, value_dtype, input_size
    )
    from fkd.generate import GenerateConfig, failure_message  # imports torch: after the checks

    config = GenerateConfig(
        data=data,
        out=out,
        teachers=teachers,
        weights=tuple(weights),
        crops_per_image=crops_per_image,
        scale=crop_range[0],
        ratio=crop_range[1],
        flip_prob=flip_prob,
        seed=seed,
        label_type=label_type,
        topk=topk,
        temperature=temperature,
        value_dtype=value_dtype,
        input_size=input_size,
        interpolation=interpolation,
        batch_size=batch_size,
        block_size=block_size,
        workers=workers,
        device=device,
        shard=parse_shard(shard),
        overwrite=overwrite,
        redo_blocks=redo_blocks,
        hash_files=hash_files,
        max_failures=max_failures,
        reference=reference,
        check_fidelity=check_fidelity,
    )
    if plan:
        from fkd.generate.plan import plan_generation

        for line in plan_generation(config, plan_crops_per_s).lines():
            click.echo(line)
        return
    summary = run_generate(config, scheduler, cluster, quiet)
    lines = [json.dumps(summary.to_dict())] if as_json else summary.lines()
    for line in lines:
        click.echo(line)
    message = failure_message(summary, max_failures)
    if message:
        raise click.ClickException(message)


def run_generate(
    config: GenerateConfig, scheduler: str | None, cluster: str | None, quiet: bool
) -> GenerateSummary:
    """One process, or one dask task per block with --scheduler / --cluster."""
    from fkd.generate import generate

    progress = False if quiet else None
    if scheduler is None and cluster is None:
        return generate(config, progress=progress)
    from fkd.generate.dask_cluster import ClusterOptions, parse_cluster
    from fkd.generate.dask_runner import generate_distributed

    try:
        local = parse_cluster(cluster) if cluster is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--cluster") from None
    source = click.get_current_context().get_parameter_source("workers")
    decode_workers = config.workers if source == ParameterSource.COMMANDLINE else 0
    options = ClusterOptions(scheduler, local, decode_workers)
    return generate_distributed(config, options, progress=progress)


def check_options(
    crops_per_image: int,
    crop_range: tuple[tuple[float, float], tuple[float, float]],
    label_type: str,
    topk: int,
    temperature: float,
    value_dtype: str,
    input_size: int | None,
) -> None:
    """The store spec's own checks of each option, before torch loads (usage errors, exit 2).

    Only ``--topk`` against the teacher's class count waits for the teacher.
    """
    from fkd.storage_formats import CodecSpec, CropSpec, TeacherInfo
    from fkd.storage_formats.label_codecs import codec_spec
    from fkd.storage_formats.spec import MAX_CLASSES

    scale, ratio = crop_range
    check_option("--scale", lambda: CropSpec(crops_per_image, scale=scale))
    check_option("--ratio", lambda: CropSpec(crops_per_image, ratio=ratio))
    check_option("--temperature", lambda: CodecSpec("hard", 2, temperature=temperature))
    check_option(
        "--value-dtype",
        lambda: codec_spec(label_type, MAX_CLASSES, min(topk, MAX_CLASSES), 1.0, value_dtype),
    )
    if input_size is not None:
        check_option("--input-size", lambda: TeacherInfo("-", input_size))


MAX_REDO_BLOCKS = 1_000_000


def parse_blocks(text: str | None) -> tuple[int, ...]:
    """``3,5,7-9`` -> (3, 5, 7, 8, 9): sorted, without repeats; ``None`` -> ()."""
    if text is None:
        return ()
    blocks: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise click.BadParameter(
                f"expected block numbers like 3,5 or 7-9, got {text!r}", param_hint="--redo-blocks"
            ) from None
        if low < 0 or high < low:
            raise click.BadParameter(
                f"{part.strip()!r}: block numbers are >= 0 and ranges run low-high",
                param_hint="--redo-blocks",
            )
        if high - low + 1 + len(blocks) > MAX_REDO_BLOCKS:
            raise click.BadParameter(
                f"more than {MAX_REDO_BLOCKS} blocks; to label every block anew use --overwrite",
                param_hint="--redo-blocks",
            )
        blocks.update(range(low, high + 1))
    return tuple(sorted(blocks))
