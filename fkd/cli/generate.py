"""``fkd generate``: label M random-resized crops of every image with a teacher, into a store."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from fkd.cli.options import command
from fkd.generate.config import GenerateConfig, GenerateRun

if TYPE_CHECKING:
    from fkd.generate import GenerateSummary


@command(
    "generate",
    GenerateConfig,
    GenerateRun,
    stops="the committed blocks are kept; re-run the same command to resume from them.",
)
def generate_command(config: GenerateConfig, run: GenerateRun) -> None:
    """Label M random-resized crops of every image in DATA with a teacher, into STORE.

    DATA is an ImageFolder tree (class subfolders; DATA/train is used when it
    exists) or a text/CSV file listing relative paths with optional labels.
    Re-running the same command resumes: committed blocks are skipped.
    """
    from fkd.generate import failure_message  # imports torch: after the options are checked

    if run.plan:
        from fkd.generate.plan import plan_generation

        for line in plan_generation(config, run.plan_crops_per_s).lines():
            click.echo(line)
        return
    summary = run_generate(config, run)
    for line in [json.dumps(summary.to_dict())] if run.as_json else summary.lines():
        click.echo(line)
    message = failure_message(summary, config.max_failures)
    if message:
        raise click.ClickException(message)


def run_generate(config: GenerateConfig, run: GenerateRun) -> GenerateSummary:
    """One process, or one dask task per block with --scheduler / --cluster."""
    from fkd.generate import generate

    progress = False if run.quiet else None
    if run.scheduler is None and run.cluster is None:
        return generate(config, progress=progress)
    from fkd.generate.dask_cluster import ClusterOptions, parse_cluster
    from fkd.generate.dask_runner import generate_distributed

    try:
        local = parse_cluster(run.cluster) if run.cluster is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--cluster") from None
    source = click.get_current_context().get_parameter_source("workers")
    decode_workers = config.workers if source == ParameterSource.COMMANDLINE else 0
    options = ClusterOptions(run.scheduler, local, decode_workers)
    return generate_distributed(config, options, progress=progress)
