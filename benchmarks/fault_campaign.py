"""Randomised kill/resume campaign against ``fkd generate`` (issue #8, part 1).

Runs ``python -m fkd generate`` on Fashion-MNIST PNGs (made from the Debian IDX files
at /usr/share/datasets/fashion-mnist) with a tiny seeded conv-net teacher, SIGKILLs the
whole process group at seeded random moments (during start-up, store creation, block
writes and resumes), resumes, and checks after every kill that no committed block was
lost or changed, that every committed block is byte-identical to an uninterrupted
reference run, and that reads of uncommitted blocks are refused.  Every store that
finishes must pass ``fkd verify`` (``verify_store``) and equal the reference array by
array.  The logic lives in ``tests/fault_tools.py`` (``Campaign``), shared with CI's
short campaign in ``tests/test_faults.py``.

    OMP_NUM_THREADS=1 nice python benchmarks/fault_campaign.py --kills 200 [--seed 8]
        [--images 96] [--block-size 4] [--delay 0.05] [--workers 0,1] [--work DIR]
        [--json OUT]

Prints: kills survived, bytes redone (chunk files of uncommitted blocks found on disk
after a kill, which the resume rewrote), blocks lost (must be 0), mismatches (must be 0).
Exit status 1 if a block was lost, a byte differed or a finished store failed verify.

Dask campaigns (pending): killing dask workers and the client mid-block belongs here as
``--runner dask`` once the dask runner (``fkd.distributed``) lands; see
docs/reliability.md, "Pending".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fault_tools import Campaign, make_setup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--block-size", type=int, default=4)
    parser.add_argument("--delay", type=float, default=0.05, help="teacher sleep per batch (s)")
    parser.add_argument("--workers", default="0,1", help="decode workers, drawn per run")
    parser.add_argument("--runner", choices=["local"], default="local", help="dask: pending")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="fkd-faults-"))
    setup = make_setup(work / "inputs", images=args.images, block_size=args.block_size)
    campaign = Campaign(
        setup,
        work / "campaign",
        seed=args.seed,
        delay=args.delay,
        workers=[int(w) for w in args.workers.split(",")],
        log=lambda line: print(line, flush=True),
    )
    result = campaign.run(args.kills)
    print(
        f"campaign: {args.images} Fashion-MNIST images, {campaign.num_blocks} blocks of "
        f"{args.block_size}, M={setup.crops}, seed {args.seed}, workers {args.workers}"
    )
    for line in result.lines():
        print(line)
    for problem in result.problems[:20]:
        print("PROBLEM:", problem)
    if args.json:
        args.json.write_text(json.dumps(dataclasses.asdict(result), indent=2))
    bad = result.blocks_lost or result.mismatches or result.verify_failures
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
