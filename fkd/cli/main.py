"""The ``fkd`` entry point: the command group and its subcommands."""

from __future__ import annotations

import click

from fkd import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fkd")
@click.option(
    "--debug",
    is_flag=True,
    envvar="FKD_DEBUG",
    help="Show the full traceback of errors fkd answers in one line (a bad option, a "
    "missing file...); errors it does not expect always show theirs.",
)
def cli(debug: bool) -> None:
    """Offline knowledge distillation: generate teacher soft labels once, train students many times.

    A label store holds, for every training image, M random-resized crop boxes
    and the teacher's compressed soft label for each crop.
    """


def register_commands() -> None:
    from fkd.cli.convert import convert_command
    from fkd.cli.datasets import datasets_command
    from fkd.cli.eval import eval_command
    from fkd.cli.generate import generate_command
    from fkd.cli.inspect import inspect_command
    from fkd.cli.publish import publish_command
    from fkd.cli.teacher_eval import teacher_eval_command
    from fkd.cli.train import train_command
    from fkd.cli.verify import verify_command

    for command in (
        generate_command,
        teacher_eval_command,
        inspect_command,
        verify_command,
        convert_command,
        publish_command,
        train_command,
        eval_command,
        datasets_command,
    ):
        cli.add_command(command)


register_commands()


def main() -> None:
    cli()
