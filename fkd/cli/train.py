"""``fkd train``: train a student from a label store (or an online teacher, or hard labels)."""

from __future__ import annotations

import click

from fkd.cli.options import command
from fkd.train.config import TrainConfig, TrainRun


@command(
    "train",
    TrainConfig,
    TrainRun,
    stops="with --out, the checkpoint of the last finished epoch is kept; re-run the same "
    "command with --resume to continue from it.",
)
def train_command(config: TrainConfig, run: TrainRun) -> None:
    """Train a student on the crops of DATA with the soft labels of --labels STORE.

    DATA is the image folder the store was made from (DATA/train is used when
    it exists; DATA/val, when it exists, is evaluated every epoch). Run under
    `torchrun --nproc-per-node K -m fkd train ...` for data-parallel training.
    """
    from fkd.train import train  # imports torch: after the options are checked

    result = train(config, log=click.echo, progress=False if run.quiet else None)
    if result.rank == 0:  # under torchrun, one summary
        for line in result.lines():
            click.echo(line)


if __name__ == "__main__":  # python -m fkd.cli.train (also under torchrun -m fkd.cli.train)
    train_command()
