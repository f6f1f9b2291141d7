"""``fkd generate``: teacher inference over M random-resized crops per image, into a store.

One file per idea, in the order a block flows through them:

- ``config.py``: ``GenerateConfig``, every option of the command;
- ``store_setup.py``: the store's spec, the store created atomically or resumed;
- ``shards.py``: which blocks this shard labels (``--shard``, resume, ``--redo-blocks``);
- ``decode.py``: decoding ahead of the teacher, in DataLoader workers;
- ``cutter.py``: an image's crop boxes sampled and its crops cut (``fkd.crops``);
- ``labeller.py``: the teacher forward and the labels encoded on the device, per block;
- ``writer.py``: the background block writer (the commit: ``LabelStore.write_block``);
- ``pipeline.py``: ``generate()``, the run, and ``label_and_write_blocks``, its one loop;
- ``summary.py``: what a run did, and the exit-status verdict on decode failures;
- ``dask_runner.py``, ``dask_task.py``, ``dask_cluster.py``: the same run, one dask task
  per block (``--cluster``, ``--scheduler``);
- ``plan.py``: ``--plan``, a run's cost from a few measured crops;
- ``fidelity.py``: ``--check-fidelity``, the stored labels measured against the teacher.

Batches are formed inside a block, so a block's bytes depend only on the block, the
parameters and the hardware: never on sharding, worker count or resume point.

``import fkd.generate`` loads no torch: each name below is imported from its module on
first use, so ``fkd generate`` checks its options (``config.py``) before heavy imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fkd.lazy_exports import lazy_exports

if TYPE_CHECKING:  # the same names, for type checkers
    from fkd.generate.config import ACCELERATOR_BATCH_SIZE, CPU_BATCH_SIZE, GenerateConfig
    from fkd.generate.cutter import CropCutter
    from fkd.generate.decode import Decoded, DecodeDataset, decoded_images
    from fkd.generate.errors import GenerateError
    from fkd.generate.labeller import BlockLabeller
    from fkd.generate.pipeline import (
        LabelledBlock,
        PreparedRun,
        finish_summary,
        generate,
        label_and_write_blocks,
        label_one_block,
        prepare_run,
    )
    from fkd.generate.shards import (
        blocks_for_shard,
        check_redo_blocks,
        shard_blocks,
        shard_failures,
    )
    from fkd.generate.store_setup import (
        DEFAULT_CROP_INTERPOLATION,
        build_spec,
        open_or_create_store,
        open_reference,
        software_versions,
    )
    from fkd.generate.summary import BlockStats, GenerateSummary, failure_message, store_bytes
    from fkd.generate.writer import BlockWriter

_HOMES = {
    "ACCELERATOR_BATCH_SIZE": "fkd.generate.config",
    "CPU_BATCH_SIZE": "fkd.generate.config",
    "GenerateConfig": "fkd.generate.config",
    "CropCutter": "fkd.generate.cutter",
    "Decoded": "fkd.generate.decode",
    "DecodeDataset": "fkd.generate.decode",
    "decoded_images": "fkd.generate.decode",
    "GenerateError": "fkd.generate.errors",
    "BlockLabeller": "fkd.generate.labeller",
    "LabelledBlock": "fkd.generate.pipeline",
    "PreparedRun": "fkd.generate.pipeline",
    "finish_summary": "fkd.generate.pipeline",
    "generate": "fkd.generate.pipeline",
    "label_and_write_blocks": "fkd.generate.pipeline",
    "label_one_block": "fkd.generate.pipeline",
    "prepare_run": "fkd.generate.pipeline",
    "blocks_for_shard": "fkd.generate.shards",
    "check_redo_blocks": "fkd.generate.shards",
    "shard_blocks": "fkd.generate.shards",
    "shard_failures": "fkd.generate.shards",
    "DEFAULT_CROP_INTERPOLATION": "fkd.generate.store_setup",
    "build_spec": "fkd.generate.store_setup",
    "open_or_create_store": "fkd.generate.store_setup",
    "open_reference": "fkd.generate.store_setup",
    "software_versions": "fkd.generate.store_setup",
    "BlockStats": "fkd.generate.summary",
    "GenerateSummary": "fkd.generate.summary",
    "failure_message": "fkd.generate.summary",
    "store_bytes": "fkd.generate.summary",
    "BlockWriter": "fkd.generate.writer",
}

__all__ = [
    "ACCELERATOR_BATCH_SIZE",
    "CPU_BATCH_SIZE",
    "DEFAULT_CROP_INTERPOLATION",
    "BlockLabeller",
    "BlockStats",
    "BlockWriter",
    "CropCutter",
    "DecodeDataset",
    "Decoded",
    "GenerateConfig",
    "GenerateError",
    "GenerateSummary",
    "LabelledBlock",
    "PreparedRun",
    "blocks_for_shard",
    "build_spec",
    "check_redo_blocks",
    "decoded_images",
    "failure_message",
    "finish_summary",
    "generate",
    "label_and_write_blocks",
    "label_one_block",
    "open_or_create_store",
    "open_reference",
    "prepare_run",
    "shard_blocks",
    "shard_failures",
    "software_versions",
    "store_bytes",
]


__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
