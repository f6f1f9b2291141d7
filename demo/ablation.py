"""``make demo ABLATION=1``: FKD's label-type and crops-per-visit ablation, small-scale.

One teacher pass writes a store with the ``full`` codec (float16, every class);
``fkd convert --to store`` re-encodes it into each label type, so every student
trains on the very same crops and only the label differs.  Then the
marginal-smoothing top-5 store is trained with N = 1, 2, 4, 8 crops per visit at
the same crop budget.  Writes ``ablation.json`` and ``ablation.md`` (a table with
top-1 and bytes/crop per row) next to the demo report.

Same data, teacher and student recipe as ``demo/run.py`` (see ``--preset``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import (  # noqa: E402
    SHIPPED_TEACHER,
    DemoPlan,
    Runner,
    add_plan_options,
    plan_from_args,
    prepare_data,
)

# (row name, label type, K) of FKD's label-type table; K is ignored where the codec fixes it.
LABEL_TYPES = (
    ("hard", "hard", 1),
    ("smoothing", "smoothing", 1),
    ("marginal_smoothing K=1", "marginal_smoothing", 1),
    ("marginal_smoothing K=3", "marginal_smoothing", 3),
    ("marginal_smoothing K=5", "marginal_smoothing", 5),
    ("marginal_smoothing K=10", "marginal_smoothing", 10),
    ("marginal_renorm K=5", "marginal_renorm", 5),
    ("full", "full", 10),
)
CROPS_PER_VISIT = (1, 2, 4, 8)


def generate_full(run: Runner, plan: DemoPlan, data: Path, teacher: Path, store: Path) -> None:
    run.fkd(
        "generate once, every class kept (full, float16)",
        "generate", data, "--teacher", "fkd:cnn_teacher", "--weights", teacher,
        "--out", store, "--crops-per-image", plan.crops_per_image, "--scale", plan.scale,
        "--label-type", "full", "--value-dtype", "float16", "--seed", 0,
        "--workers", plan.workers, "--overwrite",
    )  # fmt: skip


def recode(run: Runner, full: Path, out: Path, label_type: str, topk: int) -> dict[str, Any]:
    """The store ``out`` for one label type (``full`` is the generated store itself), and
    its ``fkd inspect --json`` summary."""
    if out != full:
        run.fkd(
            f"re-encode as {label_type} K={topk}",
            "convert", "--to", "store", full, "--label-type", label_type, "--topk", topk,
            "--out", out, "--overwrite",
        )  # fmt: skip
    summary: dict[str, Any] = run.fkd("inspect", "inspect", out, "--json").json_output()
    return summary


def train(
    run: Runner, plan: DemoPlan, data: Path, store: Path, out: Path, n: int, seed: int
) -> float:
    """Final top-1 of the student trained on ``store`` with N = ``n``."""
    run.fkd(
        f"student, {store.name}, N={n}, seed {seed}",
        "train", data, "--model", plan.student, "--labels", store,
        "--epochs", plan.student_epochs, "--crops-per-visit", n,
        "--batch-size", plan.batch_size, "--lr", plan.lr, "--nesterov",
        "--workers", plan.workers, "--seed", seed, "--out", out, "--overwrite", "--quiet",
    )  # fmt: skip
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return float(records[-1]["top1"])


def mean_std(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def markdown(rows: list[dict[str, Any]], plan: DemoPlan, seeds: Sequence[int]) -> str:
    lines = [
        f"Fashion-MNIST ablation, preset `{plan.name}`, student `{plan.student}`, "
        f"{plan.student_epochs} crop-epochs, M={plan.crops_per_image}, seeds {list(seeds)}.",
        "",
        "| experiment | setting | top-1 (%) | bytes/crop |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['experiment']} | {row['setting']} | {mean_std(row['top1'])} | "
            f"{row['bytes_per_crop']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_plan_options(parser)
    parser.add_argument("--work", type=Path, default=HERE / "work" / "ablation")
    parser.add_argument("--report-dir", type=Path, default=HERE)
    parser.add_argument("--seeds", default="0", help="comma-separated student seeds")
    parser.add_argument("--teacher", type=Path, default=SHIPPED_TEACHER)
    args = parser.parse_args(argv)
    plan = plan_from_args(args)
    seeds = [int(s) for s in args.seeds.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    run = Runner(args.work / "commands.log")
    started = time.perf_counter()
    suffix = "all" if plan.train_per_class is None else str(plan.train_per_class)
    data = prepare_data(run, HERE / "work" / f"fashion-mnist-{suffix}", plan.train_per_class,
                        plan.val_per_class)  # fmt: skip
    full = args.work / "full.zarr"
    generate_full(run, plan, data, args.teacher, full)

    rows: list[dict[str, Any]] = []
    stores = {}
    for name, label_type, topk in LABEL_TYPES:
        store = args.work / f"{name.replace(' ', '_').replace('=', '')}.zarr"
        stores[name] = store  # the "full" row's name makes it the generated store itself
        summary = recode(run, full, store, label_type, topk)
        top1 = [
            train(
                run,
                plan,
                data,
                stores[name],
                args.work / "runs" / f"{store.stem}-s{s}",
                plan.crops_per_visit,
                s,
            )
            for s in seeds
        ]
        rows.append({"experiment": "label type", "setting": name, "top1": top1,
                     "bytes_per_crop": float(summary["bytes_per_crop"])})  # fmt: skip
    top5 = stores["marginal_smoothing K=5"]
    top5_bytes = next(r for r in rows if r["setting"] == "marginal_smoothing K=5")
    for n in CROPS_PER_VISIT:
        top1 = [
            train(run, plan, data, top5, args.work / "runs" / f"n{n}-s{s}", n, s) for s in seeds
        ]
        rows.append({"experiment": "crops per visit (K=5)", "setting": f"N={n}", "top1": top1,
                     "bytes_per_crop": top5_bytes["bytes_per_crop"]})  # fmt: skip
    result = {"plan": plan.to_dict(), "seeds": seeds, "rows": rows,
              "seconds": time.perf_counter() - started}  # fmt: skip
    (args.report_dir / "ablation.json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(rows, plan, seeds)
    (args.report_dir / "ablation.md").write_text(table)
    print("\n" + table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
