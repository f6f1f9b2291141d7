"""``make demo REUSE=1``: does reusing stored crops hurt the student (Beyer) or not (FKD)?

Same data, teacher and student recipe as ``demo/run.py``.  Two tables, written to
``reuse.md`` and ``reuse.json`` next to the demo report:

1. Students at the same crop-epochs (the preset's, 64 by default) from stores of
   M = 8, 16, 32 and 64 crops per image, 3 seeds: M = crop-epochs means every crop is
   fresh (what online KD's student sees); M = 8 means each stored crop is used 8 times.
   Hard labels and online KD, on the same crop schedule, are the references.
2. K students (K = 1, 3, 5; student seeds 0..K-1) from one store against K online-KD
   runs: total wall-clock (the store's generation counted once) and mean accuracy.

Every run goes to ``--work``; a finished run (its ``curve.json``) is reused, so an
interrupted measurement resumes where it stopped.  Runs of ``demo/run.py`` with the
same plan (``work/seed<S>/``) are reused too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import (  # noqa: E402 (demo/ is not a package)
    SHIPPED_TEACHER,
    DemoPlan,
    Runner,
    add_plan_options,
    generate_labels,
    plan_from_args,
    prepare_data,
    train_student,
)

STORE_SIZES = (8, 16, 32, 64)
STUDENT_COUNTS = (1, 3, 5)


class Measurement:
    """Runs (or reuses) stores and students under ``work``; their curves and times."""

    def __init__(self, run: Runner, plan: DemoPlan, data: Path, teacher: Path, work: Path):
        self.run, self.plan, self.data, self.teacher, self.work = run, plan, data, teacher, work

    def store(self, m: int, seed: int) -> tuple[Path, float]:
        """The store of M = ``m`` crops per image and crop seed ``seed``; its generation s."""
        folder = self.work / f"store-m{m}-seed{seed}"
        done = folder / "generated.json"
        if done.is_file():
            return folder / "labels.zarr", float(json.loads(done.read_text())["seconds"])
        demo = self.demo_run(seed)
        if demo is not None and m == self.plan.crops_per_image:
            return Path(demo["store"]), float(demo["generate_seconds"])
        folder.mkdir(parents=True, exist_ok=True)
        plan = dataclasses.replace(self.plan, crops_per_image=m)
        store = folder / "labels.zarr"
        step, _ = generate_labels(self.run, plan, self.data, self.teacher, store, seed)
        done.write_text(json.dumps({"seconds": step.seconds}) + "\n")
        return store, step.seconds

    def demo_run(self, seed: int) -> dict[str, Any] | None:
        """``demo/run.py``'s finished seed with this plan (its stores and students), if any."""
        saved = self.work.parent / f"seed{seed}" / "result.json"
        if not saved.is_file():
            return None
        result: dict[str, Any] = json.loads(saved.read_text())
        same = result.get("plan") == self.plan.to_dict()
        return result if same and "crop_paths" in result else None

    def student(
        self, method: str, seed: int, store: Path | None, name: str, m: int | None = None
    ) -> list[dict[str, Any]]:
        """A student's metrics per epoch (``curve.json``), trained unless already done.

        ``demo/run.py`` trained the same students for its seeds: M = crop-epochs, the
        store's seed = the student's seed; those are reused.
        """
        folder = self.work / name
        done = folder / "curve.json"
        if done.is_file():
            curve: list[dict[str, Any]] = json.loads(done.read_text())
            return curve
        demo = self.demo_run(seed)
        same_store = demo is not None and (store is None or store == Path(demo["store"]))
        if demo is not None and same_store and m in (None, self.plan.crops_per_image):
            return list(demo["curves"][method])
        plan = self.plan if m is None else dataclasses.replace(self.plan, crops_per_image=m)
        target = store if store is not None else Path("unused")
        curve = train_student(
            self.run, plan, method, self.data, folder, seed, target, self.teacher
        )
        done.write_text(json.dumps(curve) + "\n")
        return curve


def final(curve: Sequence[dict[str, Any]]) -> float:
    return float(curve[-1]["top1"])


def seconds(curve: Sequence[dict[str, Any]]) -> float:
    return sum(float(r["seconds"]) for r in curve)


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": spread, "values": list(values)}


def reuse_table(
    m: Measurement, seeds: Sequence[int], sizes: Sequence[int]
) -> list[dict[str, Any]]:
    """Table 1: accuracy against M at the same crop-epochs, with the two references."""
    epochs = m.plan.student_epochs
    rows = []
    for size in sizes:
        accs = []
        for seed in seeds:
            store, _ = m.store(size, seed)
            name = f"fkd-m{size}-store{seed}-student{seed}"
            accs.append(final(m.student("fkd", seed, store, name)))
        rows.append(
            {"method": f"FKD, M = {size}", "reuse": epochs / size, "top1": mean_std(accs)}
        )
    for method, label in (("hard", "hard labels"), ("online_kd", "online KD")):
        accs = [
            final(m.student(method, seed, None, f"{method}-seed{seed}", m=epochs))
            for seed in seeds
        ]
        rows.append({"method": label, "reuse": 1.0, "top1": mean_std(accs)})
    return rows


def students_table(m: Measurement, counts: Sequence[int]) -> list[dict[str, Any]]:
    """Table 2: K students from one store (seed 0, M = crop-epochs) against K online runs."""
    epochs = m.plan.student_epochs
    store, generation = m.store(epochs, 0)
    most = max(counts)
    fkd = [m.student("fkd", s, store, f"fkd-m{epochs}-store0-student{s}") for s in range(most)]
    online = [
        m.student("online_kd", s, None, f"online_kd-seed{s}", m=epochs) for s in range(most)
    ]
    rows = []
    for k in counts:
        fkd_wall = generation + sum(seconds(c) for c in fkd[:k])
        online_wall = sum(seconds(c) for c in online[:k])
        rows.append(
            {
                "students": k,
                "fkd_seconds": fkd_wall,
                "online_kd_seconds": online_wall,
                "speedup": online_wall / fkd_wall,
                "fkd_top1": mean_std([final(c) for c in fkd[:k]]),
                "online_kd_top1": mean_std([final(c) for c in online[:k]]),
            }
        )
    return rows


def cell(entry: dict[str, Any]) -> str:
    return f"{entry['mean']:.2f} ± {entry['std']:.2f}"


def markdown(report: dict[str, Any]) -> str:
    plan = report["plan"]
    lines = [
        "# Reusing stored crops: fresh against reused",
        "",
        f"Fashion-MNIST, {plan['train_per_class']} images per class, student "
        f"`{plan['student']}`, {plan['student_epochs']} crop-epochs, N = "
        f"{plan['crops_per_visit']}, seeds {report['seeds']}; final-epoch top-1 on the "
        f"held-out images. Whole measurement: {report['seconds']:.0f} s.",
        "",
        "| students from | each stored crop used | top-1 (%) | per seed |",
        "|---|---|---|---|",
    ]
    for row in report["reuse"]:
        per_seed = ", ".join(f"{v:.2f}" for v in row["top1"]["values"])
        lines.append(f"| {row['method']} | {row['reuse']:g}× | {cell(row['top1'])} | {per_seed} |")
    lines += [
        "",
        "| K students | FKD wall-clock (s), generation included | online KD (s) | "
        "online / FKD | FKD top-1 | online KD top-1 |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["students"]:
        lines.append(
            f"| {row['students']} | {row['fkd_seconds']:.0f} | {row['online_kd_seconds']:.0f} | "
            f"{row['speedup']:.2f}× | {cell(row['fkd_top1'])} | {cell(row['online_kd_top1'])} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=HERE / "work" / "reuse")
    parser.add_argument("--report-dir", type=Path, default=HERE)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--teacher", type=Path, default=SHIPPED_TEACHER)
    parser.add_argument("--store-sizes", default=",".join(map(str, STORE_SIZES)), help="M values")
    parser.add_argument(
        "--students", default=",".join(map(str, STUDENT_COUNTS)), help="K values"
    )
    add_plan_options(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = plan_from_args(args)
    seeds = [int(s) for s in args.seeds.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    run = Runner(args.work / "commands.log")
    suffix = "all" if plan.train_per_class is None else str(plan.train_per_class)
    data = prepare_data(
        run, args.work.parent / f"fashion-mnist-{suffix}", plan.train_per_class,
        plan.val_per_class,
    )  # fmt: skip
    measurement = Measurement(run, plan, data, args.teacher, args.work)
    report = {
        "plan": plan.to_dict(),
        "seeds": seeds,
        "reuse": reuse_table(measurement, seeds, [int(v) for v in args.store_sizes.split(",")]),
        "students": students_table(measurement, [int(v) for v in args.students.split(",")]),
    }
    report["seconds"] = time.perf_counter() - started
    (args.report_dir / "reuse.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.report_dir / "reuse.md").write_text(markdown(report))
    print(f"\nreuse: done in {report['seconds']:.0f} s; see {args.report_dir}/reuse.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
