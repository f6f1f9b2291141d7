"""``fkd generate``: label M random-resized crops of every image with a teacher, into a store."""

from __future__ import annotations

from pathlib import Path

import click

from fkd.cli.options import device_options, library_errors, parse_pair, parse_shard, teacher_options


@click.command("generate")
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--out",
    required=True,
    metavar="STORE",
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
    default="marginal_smoothing",
    show_default=True,
    help="Label codec: hard, smoothing, marginal_smoothing, marginal_renorm or full.",
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
    help="Crop resampling [default: bilinear, the batched fast path]. bicubic resizes crop "
    "by crop with torchvision's exact path (slower; --check-fidelity measures the "
    "difference). Recorded in the store as teacher.interpolation.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Crops per teacher forward pass.",
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
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
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
    batch_size: int,
    block_size: int,
    device: str,
    workers: int,
    shard: str,
    overwrite: bool,
    hash_files: bool,
    max_failures: float,
    reference: str | None,
    check_fidelity: int,
    quiet: bool,
) -> None:
    """Label M random-resized crops of every image in DATA with a teacher, into STORE.

    DATA is an ImageFolder tree (class subfolders; DATA/train is used when it
    exists) or a text/CSV file listing relative paths with optional labels.
    Re-running the same command resumes: committed blocks are skipped.
    """
    from fkd.generate import GenerateConfig, failure_message, generate

    if weights and len(weights) != len(teachers):
        raise click.BadParameter(
            f"{len(weights)} --weights for {len(teachers)} --teacher; give one per teacher",
            param_hint="--weights",
        )
    config = GenerateConfig(
        data=data,
        out=out,
        teachers=teachers,
        weights=tuple(weights),
        crops_per_image=crops_per_image,
        scale=parse_pair(scale, "--scale"),
        ratio=parse_pair(ratio, "--ratio"),
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
        hash_files=hash_files,
        max_failures=max_failures,
        reference=reference,
        check_fidelity=check_fidelity,
    )
    summary = generate(config, progress=False if quiet else None)
    for line in summary.lines():
        click.echo(line)
    message = failure_message(summary, max_failures)
    if message:
        raise click.ClickException(message)
