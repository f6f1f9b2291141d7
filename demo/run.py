"""``make demo``: FKD end to end on real Fashion-MNIST, every step an ordinary ``fkd`` command.

1. ``fkd datasets fashion-mnist``: the real images as an ImageFolder tree;
2. the teacher: the shipped ``demo/teacher/cnn_teacher.pt`` (made by the ``fkd train``
   command in ``demo/teacher/README.md``), or trained here with ``--train-teacher``
   (``make demo FULL=1``);
3. ``fkd teacher-eval`` on the held-out images;
4. ``fkd generate``: M crops per image labelled once, top-K marginal smoothing;
5. ``fkd train`` the student from the store (FKD);
6. the same student with hard labels;
7. the same student with online KD (``--online-teacher``), same crop budget and schedule;
8. ``demo/report.{md,json,png}`` from the figures those commands wrote.

Each command is printed before it runs, so any step can be copied and re-run.
``python demo/run.py --help`` lists the knobs; ``--preset`` picks a size
(``default``: about 10 minutes on 2 CPU cores; ``full``: all 60k images; ``quick``:
a smoke test for CI).  ``--seeds 0,1,2`` repeats the students (and the crops) per seed
and writes ``seeds.json`` with mean and standard deviation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from report import write_report  # noqa: E402 (demo/ is not a package)

SHIPPED_TEACHER = HERE / "teacher" / "cnn_teacher.pt"
METHODS = ("fkd", "hard", "online_kd")


@dataclass(frozen=True)
class DemoPlan:
    """The sizes and recipes of one demo run (see ``PRESETS`` and docs/results.md)."""

    name: str
    train_per_class: int | None  # student training images per class (None: all 6000)
    val_per_class: int | None  # held-out test images per class (None: all 1000)
    train_teacher: bool  # train the teacher here instead of using the shipped one
    teacher_per_class: int | None  # teacher training images per class (None: all)
    teacher_epochs: int
    student: str
    student_epochs: int  # crop-epochs (FKD counting: one visit of N crops = N)
    crops_per_image: int  # M, stored per image by fkd generate
    crops_per_visit: int  # N
    batch_size: int
    lr: float
    scale: str  # RandomResizedCrop area range, for the teacher, the store and all students
    label_type: str
    topk: int
    temperature: float
    workers: int
    fidelity_images: int
    # Crops per teacher forward in fkd generate: 64 is the 32 px CNN's fastest on CPU
    # (benchmarks/teacher_batch_bench.py); fkd's CPU default of 4 suits ImageNet-size ones.
    teacher_batch_size: int = 64

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DEFAULT = DemoPlan(
    name="default",
    train_per_class=200,
    val_per_class=None,
    train_teacher=False,
    teacher_per_class=None,
    teacher_epochs=12,
    student="cnn_8_16_32",
    student_epochs=64,
    crops_per_image=64,
    crops_per_visit=4,
    batch_size=128,
    lr=0.2,
    scale="0.25,1",
    label_type="marginal_smoothing",
    topk=5,
    temperature=1.0,
    workers=1,
    fidelity_images=200,
)
PRESETS = {
    "default": DEFAULT,
    "full": dataclasses.replace(
        DEFAULT,
        name="full",
        train_per_class=None,
        train_teacher=True,
        student_epochs=32,
        crops_per_image=32,
    ),
    "quick": dataclasses.replace(
        DEFAULT,
        name="quick",
        train_per_class=50,
        val_per_class=20,
        train_teacher=True,
        teacher_per_class=50,
        teacher_epochs=1,
        student_epochs=2,
        crops_per_image=2,
        crops_per_visit=2,
        batch_size=64,
        workers=0,
        fidelity_images=4,
    ),
}


# Running commands -------------------------------------------------------------------


@dataclass
class Step:
    """One command that ran: what it was, how long it took, what it printed."""

    title: str
    argv: list[str]
    seconds: float
    stdout: str

    def json_output(self) -> dict[str, Any]:
        """What a ``--json`` command printed: the whole of stdout, else its last line."""
        try:
            parsed: dict[str, Any] = json.loads(self.stdout)
        except json.JSONDecodeError:
            lines = [line for line in self.stdout.splitlines() if line.strip()]
            if not lines:
                raise RuntimeError(f"{self.title}: the command printed nothing") from None
            parsed = json.loads(lines[-1])
        return parsed


class Runner:
    """Runs ``fkd`` commands (as ``python -m fkd``), echoing each one first."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.steps: list[Step] = []
        self.env = dict(os.environ)
        # Small convolutions on shared 2-core machines run 10x slower with 2 threads.
        self.env.setdefault("OMP_NUM_THREADS", "1")

    def fkd(self, title: str, *args: object) -> Step:
        argv = [str(a) for a in args]
        shown = "fkd " + shlex.join(argv)
        print(f"\n== {title}\n$ {shown}", flush=True)
        started = time.perf_counter()
        # stdout is captured (results, JSON); stderr (progress) goes to the terminal.
        result = subprocess.run(
            [sys.executable, "-m", "fkd", *argv],
            stdout=subprocess.PIPE,
            text=True,
            env=self.env,
            check=False,
        )
        seconds = time.perf_counter() - started
        print(result.stdout, end="", flush=True)
        with self.log.open("a") as handle:
            handle.write(f"$ {shown}\n{result.stdout}[{seconds:.1f} s, exit {result.returncode}]\n")
        if result.returncode != 0:
            raise SystemExit(f"demo: step '{title}' failed (exit {result.returncode}): {shown}")
        step = Step(title, argv, seconds, result.stdout)
        self.steps.append(step)
        print(f"[{title}: {seconds:.1f} s]", flush=True)
        return step


# The steps --------------------------------------------------------------------------


def prepare_data(run: Runner, out: Path, train: int | None, val: int | None) -> Path:
    args: list[object] = ["datasets", "fashion-mnist", "--out", out, "--json"]
    if train is not None:
        args += ["--limit-per-class", train]
    if val is not None:
        args += ["--val-limit-per-class", val]
    run.fkd("prepare Fashion-MNIST", *args)
    return out


def train_teacher(run: Runner, plan: DemoPlan, data: Path, out: Path) -> Path:
    run.fkd(
        "train the teacher (hard labels)",
        "train", data, "--model", "cnn_teacher", "--epochs", plan.teacher_epochs,
        "--crops-per-visit", 4, "--batch-size", 256, "--lr", 0.2, "--nesterov",
        "--weight-decay", "5e-4", "--scale", plan.scale, "--workers", plan.workers,
        "--seed", 0, "--out", out, "--overwrite", "--quiet",
    )  # fmt: skip
    return out / "checkpoint.pt"


def evaluate_teacher(run: Runner, data: Path, teacher: Path, workers: int) -> dict[str, Any]:
    step = run.fkd(
        "evaluate the teacher",
        "teacher-eval", data / "val", "--teacher", "fkd:cnn_teacher", "--weights", teacher,
        "--workers", workers, "--json",
    )  # fmt: skip
    return step.json_output()


def generate_labels(
    run: Runner, plan: DemoPlan, data: Path, teacher: Path, store: Path, seed: int
) -> tuple[Step, dict[str, Any]]:
    step = run.fkd(
        "generate the label store (teacher runs once)",
        "generate", data, "--teacher", "fkd:cnn_teacher", "--weights", teacher,
        "--out", store, "--crops-per-image", plan.crops_per_image, "--scale", plan.scale,
        "--label-type", plan.label_type, "--topk", plan.topk,
        "--temperature", plan.temperature, "--seed", seed, "--workers", plan.workers,
        "--batch-size", plan.teacher_batch_size,
        "--check-fidelity", plan.fidelity_images, "--overwrite", "--json",
    )  # fmt: skip
    return step, step.json_output()


def train_student(
    run: Runner,
    plan: DemoPlan,
    method: str,
    data: Path,
    out: Path,
    seed: int,
    store: Path,
    teacher: Path,
) -> list[dict[str, Any]]:
    sources: dict[str, list[object]] = {
        "fkd": ["--labels", store],
        # The store's M, scale and seed: these students cut exactly the FKD student's
        # crops (same boxes, flips, schedule and resampling), so only the labels differ.
        "hard": ["--scale", plan.scale, "--crops-per-image", plan.crops_per_image],
        "online_kd": [
            "--online-teacher", "fkd:cnn_teacher", "--online-teacher-weights", teacher,
            "--scale", plan.scale, "--crops-per-image", plan.crops_per_image,
        ],
    }  # fmt: skip
    titles = {
        "fkd": "student from the stored labels (FKD, no teacher)",
        "hard": "student with hard labels",
        "online_kd": "student with online KD (the teacher runs every step)",
    }
    run.fkd(
        titles[method],
        "train", data, "--model", plan.student, *sources[method],
        "--epochs", plan.student_epochs, "--crops-per-visit", plan.crops_per_visit,
        "--batch-size", plan.batch_size, "--lr", plan.lr, "--nesterov",
        "--workers", plan.workers, "--seed", seed, "--out", out, "--overwrite", "--quiet",
    )  # fmt: skip
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def crop_path(curve: Sequence[dict[str, Any]]) -> str:
    """Where a student's crops came from and how they were resampled (its metrics say)."""
    last = curve[-1]
    return f"{last.get('crops_from', '?')}, resampled {last.get('resampling', '?')}"


# One seed ---------------------------------------------------------------------------


def run_seed(
    run: Runner, plan: DemoPlan, data: Path, teacher: Path, work: Path, seed: int
) -> dict[str, Any]:
    """Generate the store and train the three students with ``seed``; their figures.

    A seed finished earlier with the same plan and teacher (``result.json``) is reused.
    """
    saved = work / "result.json"
    if saved.is_file():
        result: dict[str, Any] = json.loads(saved.read_text())
        same = result.get("plan") == plan.to_dict() and result.get("teacher") == str(teacher)
        if same and "crop_paths" in result:  # runs before the single crop path are redone
            print(f"\n== seed {seed}: reusing the finished run in {work}", flush=True)
            return {**result, "reused": True}
    store = work / "labels.zarr"
    generate_step, generated = generate_labels(run, plan, data, teacher, store, seed)
    curves = {
        method: train_student(run, plan, method, data, work / method, seed, store, teacher)
        for method in METHODS
    }
    result = {
        "seed": seed,
        "plan": plan.to_dict(),
        "teacher": str(teacher),
        "generate_seconds": generate_step.seconds,
        "generate": generated,
        "store": str(store),
        "curves": curves,
        "crop_paths": {method: crop_path(curve) for method, curve in curves.items()},
    }
    saved.write_text(json.dumps(result) + "\n")
    return result


def seed_figures(result: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of one seed (final-epoch top-1, throughput, store)."""
    figures: dict[str, float] = {}
    for method, curve in result["curves"].items():
        last = curve[-1]
        figures[f"{method}_acc"] = float(last["top1"])
        figures[f"{method}_crops_per_s"] = sum(r["crops"] for r in curve) / sum(
            r["seconds"] for r in curve
        )
        figures[f"{method}_train_seconds"] = sum(r["seconds"] for r in curve)
    generated = result["generate"]
    fidelity = generated.get("fidelity") or {}
    figures.update(
        generate_seconds=float(result["generate_seconds"]),
        store_bytes=float(generated["bytes_on_disk"]),
        bytes_per_crop=float(generated["bytes_per_crop"]),
        fidelity_kl=float(fidelity.get("kl_teacher_vs_stored", float("nan"))),
        fidelity_top1_agreement=100.0 * float(fidelity.get("top1_agreement", float("nan"))),
    )
    figures["fkd_vs_online_kd_speed"] = (
        figures["fkd_crops_per_s"] / figures["online_kd_crops_per_s"]
    )
    return figures


def summarise_seeds(per_seed: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and (sample) standard deviation of every figure over the seeds."""
    summary = {}
    for key in per_seed[0]:
        values = [figures[key] for figures in per_seed]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        summary[key] = {"mean": statistics.fmean(values), "std": spread, "n": len(values)}
    return summary


# The whole demo ---------------------------------------------------------------------


OVERRIDABLE = (
    ("train_per_class", int),
    ("student", str),
    ("student_epochs", int),
    ("crops_per_image", int),
    ("crops_per_visit", int),
    ("temperature", float),
    ("topk", int),
)


def add_plan_options(parser: argparse.ArgumentParser) -> None:
    """``--preset`` and the plan fields a run may override."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    for name, kind in OVERRIDABLE:
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=kind, default=None, help="override the preset's value")


def plan_from_args(args: argparse.Namespace) -> DemoPlan:
    """The preset with the overrides given on the command line."""
    plan = PRESETS[args.preset]
    overrides: dict[str, Any] = {
        name: getattr(args, name) for name, _ in OVERRIDABLE if getattr(args, name) is not None
    }
    if getattr(args, "train_teacher", False):
        overrides["train_teacher"] = True
    return dataclasses.replace(plan, **overrides)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=HERE / "work", help="scratch folder")
    parser.add_argument("--report-dir", type=Path, default=HERE, help="report.{md,json,png}")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    parser.add_argument(
        "--teacher",
        type=Path,
        default=SHIPPED_TEACHER,
        help="the cnn_teacher checkpoint (from fkd train) to use when not training one here",
    )
    add_plan_options(parser)
    parser.add_argument(
        "--train-teacher",
        action="store_true",
        help="train the teacher here rather than use demo/teacher/cnn_teacher.pt",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = plan_from_args(args)
    seeds = [int(s) for s in args.seeds.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    args.report_dir.mkdir(parents=True, exist_ok=True)
    run = Runner(args.work / "commands.log")
    started = time.perf_counter()

    suffix = "all" if plan.train_per_class is None else str(plan.train_per_class)
    data = prepare_data(run, args.work / f"fashion-mnist-{suffix}", plan.train_per_class,
                        plan.val_per_class)  # fmt: skip
    teacher_data = data
    if plan.train_teacher and plan.teacher_per_class != plan.train_per_class:
        teacher_suffix = "all" if plan.teacher_per_class is None else str(plan.teacher_per_class)
        teacher_data = prepare_data(run, args.work / f"fashion-mnist-{teacher_suffix}",
                                    plan.teacher_per_class, plan.val_per_class)  # fmt: skip
    teacher_seconds = None
    if plan.train_teacher:
        teacher = train_teacher(run, plan, teacher_data, args.work / "teacher")
        teacher_seconds = run.steps[-1].seconds
    else:
        teacher = args.teacher
    teacher_acc = evaluate_teacher(run, data, teacher, plan.workers)

    results = []
    for seed in seeds:
        result = run_seed(run, plan, data, teacher, args.work / f"seed{seed}", seed)
        result["figures"] = {"teacher_acc": float(teacher_acc["top1"]), **seed_figures(result)}
        results.append(result)
    write_report(
        args.report_dir,
        plan=plan.to_dict(),
        teacher={
            "checkpoint": str(teacher),
            "accuracy": teacher_acc,
            "trained_here_seconds": teacher_seconds,
        },
        results=results,
        summary=summarise_seeds([r["figures"] for r in results]),
        commands=[["fkd", *step.argv] for step in run.steps],
        seconds=time.perf_counter() - started,
    )
    print(f"\ndemo: done in {time.perf_counter() - started:.0f} s; see {args.report_dir}/report.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
