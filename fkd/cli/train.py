"""``fkd train``: train a student from a label store (or an online teacher, or hard labels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fkd.cli.options import check_option, library_errors, parse_pair, store_location
from fkd.cli.stopping import stops_cleanly


def _training_options(func: Any) -> Any:
    options = [
        click.option(
            "--labels",
            "labels",
            default=None,
            metavar="STORE",
            callback=store_location,
            help="Label store made by fkd generate from DATA: train on its crops and "
            "soft labels. Without it (and without --online-teacher): hard labels.",
        ),
        click.option(
            "--val",
            default=None,
            type=click.Path(path_type=Path, file_okay=False),
            help="Labelled folder evaluated every epoch [default: DATA/val when it "
            "exists, else no evaluation].",
        ),
        click.option(
            "--out",
            default=None,
            metavar="DIR",
            help="Write DIR/checkpoint.pt and DIR/metrics.jsonl every epoch.",
        ),
        click.option(
            "--resume",
            default=None,
            is_flag=False,
            flag_value="",
            metavar="[CKPT]",
            help="Continue a run from CKPT (a checkpoint or a folder holding "
            "checkpoint.pt); alone, from --out.",
        ),
        click.option(
            "--overwrite", is_flag=True, help="Start again even though --out holds a checkpoint."
        ),
        click.option(
            "--epochs",
            type=click.IntRange(min=1),
            default=10,
            show_default=True,
            help="Crop-epochs: passes over crops, counted as FKD does (one visit of "
            "N crops per image is N crop-epochs).",
        ),
        click.option(
            "--crops-per-visit",
            "-n",
            type=click.IntRange(min=1),
            default=4,
            show_default=True,
            help="N: crops cut from each decode of an image (at most the store's M).",
        ),
        click.option(
            "--crops-per-image",
            "-m",
            type=click.IntRange(min=1),
            default=None,
            help="M without a store: each image's crops are drawn from M boxes of the "
            "store's sampler with --seed, N per visit, each once per M/N visits "
            "[default: N x visits, every crop fresh]. With a store's M, --seed, --scale and "
            "--ratio, hard labels and --online-teacher see exactly the FKD student's crops.",
        ),
        click.option(
            "--batch-size",
            "-b",
            type=click.IntRange(min=1),
            default=256,
            show_default=True,
            help="Crops per optimiser step over all processes (images per step: batch-size / N).",
        ),
        click.option(
            "--input-size",
            type=click.IntRange(min=8),
            default=None,
            help="Crop size in pixels [default: the model's, e.g. 28 for the small "
            "CNNs, 224 otherwise].",
        ),
        click.option(
            "--scale",
            default="0.08,1.0",
            show_default=True,
            help="RandomResizedCrop area range when crops are sampled on the fly (no store).",
        ),
        click.option(
            "--ratio",
            default=f"{3 / 4},{4 / 3}",
            show_default=True,
            help="RandomResizedCrop aspect-ratio range when crops are sampled on the fly.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _optimiser_options(func: Any) -> Any:
    options = [
        click.option(
            "--opt",
            "optimizer",
            type=click.Choice(["sgd", "adamw"]),
            default="sgd",
            show_default=True,
            help="Optimiser.",
        ),
        click.option(
            "--lr",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            help="Peak learning rate [default: 0.1 for SGD, 1e-3 for AdamW].",
        ),
        click.option(
            "--momentum",
            type=click.FloatRange(0, 1),
            default=0.9,
            show_default=True,
            help="SGD momentum.",
        ),
        click.option("--nesterov", is_flag=True, help="Nesterov momentum for SGD."),
        click.option(
            "--weight-decay",
            "--wd",
            type=click.FloatRange(min=0),
            default=None,
            help="Weight decay [default: 1e-4 for SGD, 0.05 for AdamW].",
        ),
        click.option(
            "--lr-schedule",
            type=click.Choice(["cosine", "step", "constant"]),
            default="cosine",
            show_default=True,
            help="Learning-rate schedule over crop-epochs, stepped every batch.",
        ),
        click.option(
            "--warmup-epochs",
            type=click.FloatRange(min=0),
            default=0.0,
            show_default=True,
            help="Linear warm-up, in crop-epochs.",
        ),
        click.option(
            "--lr-step-epochs",
            type=click.FloatRange(min=0, min_open=True),
            default=30.0,
            show_default=True,
            help="Step schedule: multiply the LR by --lr-gamma every this many crop-epochs.",
        ),
        click.option(
            "--lr-gamma",
            type=click.FloatRange(min=0),
            default=0.1,
            show_default=True,
            help="Step schedule decay factor.",
        ),
        click.option(
            "--min-lr",
            type=click.FloatRange(min=0),
            default=0.0,
            show_default=True,
            help="Cosine schedule floor.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _loss_options(func: Any) -> Any:
    options = [
        click.option(
            "--loss",
            type=click.Choice(["soft_ce", "kl", "dist"]),
            default="soft_ce",
            show_default=True,
            help="Soft-label loss (see fkd.losses).",
        ),
        click.option(
            "--temperature",
            "-t",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            help="Targets are softmax(teacher / T) (stored labels re-tempered when T "
            "differs from the store's); kl and dist also divide the student's logits "
            "by T [default: the store's temperature, 1 for an online teacher].",
        ),
        click.option(
            "--alpha",
            type=click.FloatRange(0, 1),
            default=0.0,
            show_default=True,
            help="Weight of a hard-label cross-entropy term mixed into the soft loss.",
        ),
        click.option(
            "--label-smoothing",
            type=click.FloatRange(0, 1, max_open=True),
            default=0.0,
            show_default=True,
            help="Label smoothing of hard labels.",
        ),
        click.option(
            "--dist-beta",
            type=click.FloatRange(min=0),
            default=1.0,
            show_default=True,
            help="DIST inter-class weight (--loss dist).",
        ),
        click.option(
            "--dist-gamma",
            type=click.FloatRange(min=0),
            default=1.0,
            show_default=True,
            help="DIST intra-class weight (--loss dist).",
        ),
        click.option(
            "--kd-stop-epoch",
            type=click.FloatRange(min=0),
            default=None,
            help="Switch to hard labels from this crop-epoch on (early-stopped KD).",
        ),
        click.option(
            "--mixup",
            type=click.FloatRange(min=0),
            default=0.0,
            show_default=True,
            help="Mixup Beta(a, a) concentration (0: off).",
        ),
        click.option(
            "--cutmix",
            type=click.FloatRange(min=0),
            default=0.0,
            show_default=True,
            help="CutMix Beta(a, a) concentration (0: off).",
        ),
        click.option(
            "--mix-prob",
            type=click.FloatRange(0, 1),
            default=1.0,
            show_default=True,
            help="Chance that a batch is mixed.",
        ),
        click.option(
            "--mix-switch-prob",
            type=click.FloatRange(0, 1),
            default=0.5,
            show_default=True,
            help="Chance of CutMix rather than Mixup when both are on.",
        ),
        click.option(
            "--online-teacher",
            "online_teacher",
            multiple=True,
            metavar="SPEC",
            help="Classical online KD: this live teacher (any fkd generate --teacher "
            "spec; repeat for an ensemble) labels each batch's crops.",
        ),
        click.option(
            "--online-teacher-weights",
            "online_teacher_weights",
            multiple=True,
            metavar="FILE",
            help="Weights for the online teacher at the same position.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _runtime_options(func: Any) -> Any:
    options = [
        click.option(
            "--amp",
            type=click.Choice(["auto", "bf16", "fp16", "off"]),
            default="auto",
            show_default=True,
            help="Mixed precision on CUDA (auto: bf16 where supported, else fp16); "
            "CPU runs in float32.",
        ),
        click.option("--channels-last", is_flag=True, help="channels_last memory format."),
        click.option(
            "--device",
            default="auto",
            show_default=True,
            help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N; under "
            "torchrun each process takes cuda:LOCAL_RANK.",
        ),
        click.option(
            "--workers",
            "-j",
            type=click.IntRange(min=0),
            default=2,
            show_default=True,
            help="Loader processes decoding and cutting crops (0: inline).",
        ),
        click.option(
            "--seed",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="Seed of the crop schedule, image order, mixing and initialisation.",
        ),
        click.option(
            "--eval-batch-size",
            type=click.IntRange(min=1),
            default=256,
            show_default=True,
            help="Images per evaluation forward pass.",
        ),
        click.option(
            "--eval-crop-pct",
            type=click.FloatRange(0.1, 1.0),
            default=0.875,
            show_default=True,
            help="Evaluation: resize the short side to size / crop_pct, centre-crop.",
        ),
        click.option(
            "--skip-failed",
            is_flag=True,
            help="Leave out images the store records as failed to decode.",
        ),
        click.option(
            "--no-check-sizes",
            "check_sizes",
            is_flag=True,
            flag_value=False,
            default=True,
            help="Accept images whose file size changed since the store was made (a resized copy).",
        ),
        click.option("--quiet", "-q", is_flag=True, help="No progress line."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command("train")
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--model",
    "model",
    required=True,
    metavar="ARCH",
    help="Student architecture: cnn_4_8_16, cnn_8_16_32, cnn_teacher, "
    "efficientnet_lite0, any torchvision classification model, or timm:<name>.",
)
@_training_options
@_optimiser_options
@_loss_options
@_runtime_options
@stops_cleanly(
    "with --out, the checkpoint of the last finished epoch is kept; re-run the same command "
    "with --resume to continue from it."
)
@library_errors
def train_command(data: Path, quiet: bool, scale: str, ratio: str, **options: Any) -> None:
    """Train a student on the crops of DATA with the soft labels of --labels STORE.

    DATA is the image folder the store was made from (DATA/train is used when
    it exists; DATA/val, when it exists, is evaluated every epoch). Run under
    `torchrun --nproc-per-node K -m fkd train ...` for data-parallel training.
    """
    resume = options.pop("resume")
    if resume == "":
        if options["out"] is None:
            raise click.BadParameter("--resume without a path needs --out", param_hint="--resume")
        resume = options["out"]
    if options["online_teacher_weights"] and len(options["online_teacher_weights"]) != len(
        options["online_teacher"]
    ):
        raise click.BadParameter(
            f"{len(options['online_teacher_weights'])} --online-teacher-weights for "
            f"{len(options['online_teacher'])} --online-teacher; give one per teacher",
            param_hint="--online-teacher-weights",
        )
    crop_range = parse_pair(scale, "--scale"), parse_pair(ratio, "--ratio")
    _check_crop_range(*crop_range)
    from fkd.train import train  # imports torch: after the checks above

    config = _make_config(data, resume, crop_range, options)
    result = train(config, log=click.echo, progress=False if quiet else None)
    if result.rank == 0:  # under torchrun, one summary
        for line in result.lines():
            click.echo(line)


def _check_crop_range(scale: tuple[float, float], ratio: tuple[float, float]) -> None:
    """The crop sampler's own checks of --scale and --ratio, before torch loads (exit 2)."""
    from fkd.storage_formats import CropSpec

    check_option("--scale", lambda: CropSpec(1, scale=scale))
    check_option("--ratio", lambda: CropSpec(1, ratio=ratio))


def _make_config(
    data: Path,
    resume: str | None,
    crop_range: tuple[tuple[float, float], tuple[float, float]],
    options: dict[str, Any],
) -> Any:
    from fkd.train import TrainConfig

    values = dict(options)
    val = values.pop("val")
    return TrainConfig(
        data=str(data),
        resume=resume,
        val=None if val is None else str(val),
        scale=crop_range[0],
        ratio=crop_range[1],
        **values,
    )


if __name__ == "__main__":  # python -m fkd.cli.train (also under torchrun -m fkd.cli.train)
    train_command()
