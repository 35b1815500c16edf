"""Robustness results as a readable table and a plot of metric vs severity.

``write_robustness_report(results, out)`` writes::

    robustness.json   everything :func:`~xmodal.eval.robustness.evaluate_robustness` returned
    robustness.md     per task: one row per condition, one column per severity, then the baselines
    robustness.png    per task: metric vs severity, a line per condition (missing modality dashed),
                      baselines as horizontal dotted lines

Figures are drawn on ``matplotlib.figure.Figure`` (Agg canvas), never through pyplot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from xmodal.train.checkpoint import write_json_atomic

TASK_TITLES = {
    "retrieval": "retrieval R@1 (mean of image→text, text→image)",
    "zero_shot": "zero-shot top-1",
}


BASELINE_DASHES = (":", "-.", (0, (5, 2, 1, 2, 1, 2)))


def _cell(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def robustness_rows(task: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of one task: condition × severity of its main metric, then baseline rows."""
    severities = task["severities"]
    metric = task["metric"]
    header = ["condition", *[f"s={s}" for s in severities]]
    rows = [["clean", _cell(task["clean"][metric]), *[""] * (len(severities) - 1)]]
    for name, curve in task["curves"].items():
        values = [None] * len(severities) if curve is None else curve[metric]
        rows.append([name, *[_cell(v) for v in values]])
    for name, value in task["baselines"].items():
        rows.append([f"baseline: {name}", _cell(value), *[""] * (len(severities) - 1)])
    return header, rows


def robustness_markdown(results: dict[str, Any]) -> str:
    """Markdown tables of every task in ``results``, with the settings line first."""
    settings = results.get("settings", {})
    lines = [
        "# Robustness to corrupted and missing modalities",
        "",
        f"seed {settings.get('seed', 0)}; severity 0 is clean; missing-modality severity s removes "
        "s/5 of that side's inputs.",
    ]
    for key, title in TASK_TITLES.items():
        if key not in results:
            continue
        task = results[key]
        header, rows = robustness_rows(task)
        lines += ["", f"## {title} (n = {task['n_images']} images)", ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def plot_robustness(results: dict[str, Any], path: Path) -> None:
    """One panel per task: metric vs severity per condition, baselines as dotted lines."""
    tasks = [k for k in TASK_TITLES if k in results]
    if not tasks:
        raise ValueError("no robustness results to plot")
    fig = Figure(figsize=(6.5 * len(tasks), 4.8), constrained_layout=True)
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    for ax, key in zip(axes, tasks, strict=True):
        task = results[key]
        metric, xs = task["metric"], task["severities"]
        for name, curve in task["curves"].items():
            if curve is None:
                continue
            style = "--" if name.startswith("missing") else "-"
            ax.plot(xs, curve[metric], style, marker="o", markersize=3, label=name)
        for (name, value), dash in zip(task["baselines"].items(), BASELINE_DASHES, strict=False):
            if value is not None:
                ax.axhline(value, linestyle=dash, color="black", linewidth=1, label=f"baseline: {name}")
        ax.set_title(TASK_TITLES[key])
        ax.set_xlabel("severity (0 = clean)")
        ax.set_ylabel(metric)
        ax.set_xticks(xs)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=110)


def write_robustness_report(results: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Writes robustness.json, robustness.md and robustness.png into ``out``; returns their paths."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": folder / "robustness.json",
        "markdown": folder / "robustness.md",
        "plot": folder / "robustness.png",
    }
    write_json_atomic(paths["json"], results)
    paths["markdown"].write_text(robustness_markdown(results), encoding="utf-8")
    plot_robustness(results, paths["plot"])
    return paths
