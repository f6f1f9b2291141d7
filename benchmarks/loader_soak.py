"""Loader soak: 8 DataLoader workers reading a real store for minutes (issue #8, part 6).

Fashion-MNIST PNGs (from the Debian IDX files) are labelled by ``fkd generate`` with a
tiny seeded teacher, then ``fkd.data.make_loader`` (8 persistent workers, 16 images x 4
crops per batch, 32 px) is read for ``--seconds`` after a warm-up.  Every batch is
checked, every epoch must be complete, no worker may die.  Prints crops/s and the
resident memory (VmRSS from /proc/<pid>/status) of the main process and the workers
after the warm-up and at the end.  CI runs the same for 20 s
(``tests/test_loader_soak.py``).

    OMP_NUM_THREADS=1 nice python benchmarks/loader_soak.py [--seconds 300] [--workers 8]
        [--images 256] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fault_tools.generate_command import make_setup
from fault_tools.loader_soak import soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*worker processes in total.*")
    root = Path(tempfile.mkdtemp(prefix="fkd-soak-"))
    setup = make_setup(root, images=args.images, crops=16, block_size=32)
    setup.run(root / "labels.zarr")
    result = soak(setup.data, root / "labels.zarr", args.seconds, workers=args.workers)
    for line in result.lines():
        print(line)
    if args.json:
        args.json.write_text(json.dumps(dataclasses.asdict(result), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
