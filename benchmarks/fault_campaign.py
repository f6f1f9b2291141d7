"""Randomised kill/resume campaign against ``fkd generate`` (issue #8, part 1).

Runs ``python -m fkd generate`` on Fashion-MNIST PNGs (made from the Debian IDX files
at /usr/share/datasets/fashion-mnist) with a tiny seeded conv-net teacher, SIGKILLs the
whole process group at seeded random moments (during start-up, store creation, block
writes and resumes), resumes, and checks after every kill that no committed block was
lost or changed, that every committed block is byte-identical to an uninterrupted
reference run, and that reads of uncommitted blocks are refused.  Every store that
finishes must pass ``fkd verify`` (``verify_store``) and equal the reference array by
array.  The logic lives in ``tests/fault_tools/campaign.py`` (``Campaign``), shared with CI's
short campaign in ``tests/test_faults.py``.

    OMP_NUM_THREADS=1 nice python benchmarks/fault_campaign.py --kills 200 [--seed 8]
        [--images 96] [--block-size 4] [--delay 0.05] [--workers 0,1] [--work DIR]
        [--json OUT]

Prints: kills survived, bytes redone (chunk files of uncommitted blocks found on disk
after a kill, which the resume rewrote), blocks lost (must be 0), mismatches (must be 0).
Exit status 1 if a block was lost, a byte differed or a finished store failed verify.

Dask campaigns (``--runner``; the same checks, the reference being an unkilled run of
the same command):

- ``dask-client``: the run is ``fkd generate ... --cluster local:2``; each kill is a
  SIGKILL of its whole process group (client and LocalCluster workers), after which no
  process the run started may be alive (orphans: must be 0); then resume, as above.
- ``dask-worker``: the campaign starts a LocalCluster of 2 workers (nannies restart a
  killed worker) and runs ``fkd generate ... --scheduler ADDRESS`` to its end while it
  SIGKILLs a random worker, each time after a random gap once both workers are back
  and one holds a block.  Every run must exit 0 having written each of its blocks; a
  run that dask gives up on (a block lost with its workers more than
  ``distributed.scheduler.allowed-failures`` times, KilledWorker) is counted and resumed
  by running the same command again.  Kills counted are worker kills.

    OMP_NUM_THREADS=1 nice python benchmarks/fault_campaign.py --runner dask-worker \\
        --kills 200 --images 192 --delay 1.0 [--gap 4] [--seconds 1800]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fault_tools.campaign import Campaign
from fault_tools.dask_client_campaign import DaskClientCampaign
from fault_tools.dask_worker_campaign import DaskWorkerCampaign
from fault_tools.generate_command import make_setup

RUNNERS = {"local": Campaign, "dask-client": DaskClientCampaign, "dask-worker": DaskWorkerCampaign}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--block-size", type=int, default=4)
    parser.add_argument("--delay", type=float, default=0.05, help="teacher sleep per batch (s)")
    parser.add_argument("--workers", default="0,1", help="decode workers, drawn per run")
    parser.add_argument("--runner", choices=sorted(RUNNERS), default="local")
    parser.add_argument("--seconds", type=float, default=None, help="stop killing after this")
    parser.add_argument(
        "--gap",
        type=float,
        default=None,
        help="dask-worker: most seconds between kills (default: half the reference's block phase)",
    )
    parser.add_argument("--cluster-workers", type=int, default=2, help="dask runners")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="fkd-faults-"))
    setup = make_setup(work / "inputs", images=args.images, block_size=args.block_size)
    options: dict[str, object] = {}
    if args.runner != "local":
        options["cluster_workers"] = args.cluster_workers
    if args.runner == "dask-worker":
        options["gap"] = args.gap
    campaign = RUNNERS[args.runner](
        setup,
        work / "campaign",
        seed=args.seed,
        delay=args.delay,
        workers=[int(w) for w in args.workers.split(",")],
        log=lambda line: print(line, flush=True),
        **options,
    )
    result = campaign.run(args.kills, args.seconds)
    where = f"workers {args.workers}"
    if args.runner != "local":
        where = f"runner {args.runner}, {args.cluster_workers} dask workers"
    print(
        f"campaign: {args.images} Fashion-MNIST images, {campaign.num_blocks} blocks of "
        f"{args.block_size}, M={setup.crops}, seed {args.seed}, {where}"
    )
    for line in result.lines():
        print(line)
    for problem in result.problems[:20]:
        print("PROBLEM:", problem)
    if args.json:
        args.json.write_text(json.dumps(dataclasses.asdict(result), indent=2))
    bad = result.blocks_lost or result.mismatches or result.verify_failures or result.orphans
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
