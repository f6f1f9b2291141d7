"""The demo's report: ``report.json``, ``report.md`` and ``report.png`` from one run's figures.

Every number comes from what the run's ``fkd`` commands printed or wrote
(``--json`` lines and ``metrics.jsonl``); nothing here is a constant.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

LABELS = {"fkd": "FKD (stored labels)", "hard": "hard labels", "online_kd": "online KD"}
# The keys every report.json has at its top level (means over the seeds when several).
HEADLINE = (
    "teacher_acc",
    "fkd_acc",
    "hard_acc",
    "online_kd_acc",
    "fkd_crops_per_s",
    "online_kd_crops_per_s",
    "hard_crops_per_s",
    "generate_seconds",
    "store_bytes",
    "bytes_per_crop",
    "fidelity_kl",
    "fidelity_top1_agreement",
)


def write_report(
    out: Path,
    *,
    plan: Mapping[str, Any],
    teacher: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Mapping[str, float]],
    commands: Sequence[Sequence[str]],
    seconds: float,
) -> dict[str, Any]:
    report: dict[str, Any] = {key: summary[key]["mean"] for key in summary}
    report.update(
        seeds=[r["seed"] for r in results],
        summary=summary,
        per_seed=[r["figures"] for r in results],
        curves={str(r["seed"]): r["curves"] for r in results},
        crop_paths=results[0].get("crop_paths", {}),
        plan=plan,
        teacher=teacher,
        commands=[list(c) for c in commands],
        demo_seconds=seconds,
        reused_seeds=sum(1 for r in results if r.get("reused")),
    )
    missing = [key for key in HEADLINE if key not in report]
    if missing:
        raise RuntimeError(f"report.json would lack {missing}")
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.md").write_text(markdown(report))
    plot(report, out / "report.png")
    return report


def _cell(summary: Mapping[str, Mapping[str, float]], key: str, digits: int = 2) -> str:
    entry = summary[key]
    text = f"{entry['mean']:.{digits}f}"
    return text + (f" ± {entry['std']:.{digits}f}" if entry["n"] > 1 else "")


def markdown(report: Mapping[str, Any]) -> str:
    plan, summary = report["plan"], report["summary"]
    seeds = report["seeds"]
    spread = f"mean ± std over seeds {seeds}" if len(seeds) > 1 else f"seed {seeds[0]}"
    lines = [
        "# fkd demo report",
        "",
        f"Fashion-MNIST, preset `{plan['name']}` ({spread}); student `{plan['student']}`, "
        f"{plan['student_epochs']} crop-epochs, N={plan['crops_per_visit']} crops per visit, "
        f"M={plan['crops_per_image']} stored crops per image, scale {plan['scale']}, "
        f"{plan['label_type']} top-{plan['topk']}. Whole demo: {report['demo_seconds']:.0f} s"
        + (
            f" ({report['reused_seeds']} seed(s) reused from an earlier run)."
            if report["reused_seeds"]
            else "."
        ),
        "",
        f"Teacher `cnn_teacher` ({report['teacher']['checkpoint']}): "
        f"top-1 {_cell(summary, 'teacher_acc')}% on {report['teacher']['accuracy']['images']} "
        "held-out images.",
        "",
        "| method | top-1 (%) | training wall-clock (s) | crops/s |",
        "|---|---|---|---|",
    ]
    for method, label in LABELS.items():
        lines.append(
            f"| {label} | {_cell(summary, f'{method}_acc')} | "
            f"{_cell(summary, f'{method}_train_seconds', 1)} | "
            f"{_cell(summary, f'{method}_crops_per_s', 0)} |"
        )
    lines += [
        "",
        f"- FKD vs hard labels: {report['fkd_acc'] - report['hard_acc']:+.2f} points; "
        f"FKD vs online KD: {report['fkd_acc'] - report['online_kd_acc']:+.2f} points.",
        f"- FKD trains at {_cell(summary, 'fkd_vs_online_kd_speed')}× the crops/s of online KD "
        "(no teacher in the loop).",
        f"- Label generation (once): {_cell(summary, 'generate_seconds', 1)} s; store "
        f"{report['store_bytes'] / 1e6:.2f} MB, {_cell(summary, 'bytes_per_crop')} bytes/crop.",
        f"- Fidelity of the stored labels to the full teacher: KL "
        f"{_cell(summary, 'fidelity_kl', 4)} nats, top-1 agreement "
        f"{_cell(summary, 'fidelity_top1_agreement')}%.",
        "",
        "Crop path of each student (from its metrics; seed "
        f"{report['seeds'][0]}'s, the others differ only in the seed):",
        "",
        *(
            f"- {LABELS[method]}: {path}"
            for method, path in report["crop_paths"].items()
            if method in LABELS
        ),
        "",
        "![accuracy against training wall-clock](report.png)",
        "",
        "## Commands",
        "",
        "```",
        *(" ".join(command) for command in report["commands"]),
        "```",
        "",
    ]
    return "\n".join(lines)


def plot(report: Mapping[str, Any], path: Path) -> None:
    """Top-1 against cumulative training wall-clock, one line per method (first seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seed = str(report["seeds"][0])
    curves = report["curves"][seed]
    generate_seconds = report["per_seed"][0]["generate_seconds"]
    figure, axis = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for method, label in LABELS.items():
        x, y = _cumulative(curves[method])
        axis.plot(x, y, marker="o", label=label)
        if method == "fkd":
            shifted = [t + generate_seconds for t in x]
            axis.plot(shifted, y, linestyle="--", color=axis.lines[-1].get_color(), alpha=0.6,
                      label="FKD incl. label generation")  # fmt: skip
    axis.axhline(report["teacher_acc"], color="grey", linestyle=":", label="teacher")
    axis.set_xlabel("training wall-clock (s)")
    axis.set_ylabel("top-1 on held-out images (%)")
    axis.set_title(f"fkd demo: {report['plan']['student']} on Fashion-MNIST (seed {seed})")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _cumulative(curve: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[float]]:
    x, total = [], 0.0
    for record in curve:
        total += float(record["seconds"])
        x.append(total)
    return x, [float(r["top1"]) for r in curve]
