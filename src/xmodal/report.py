"""A run's report: figures (loss curve, retrieval examples, confusion matrix) and a Markdown summary.

``write_report`` writes into one folder::

    loss.png             training loss per step: raw and smoothed (debiased EMA); validation curves and the
                         learning rate in panels beside it when the log has them
    retrieval_grid.png   one row per text query with its top-5 retrieved images, correct ones framed green
    confusion.png        a confusion matrix normalised per true class, every cell annotated
    report.md            the metrics as Markdown tables, the figures embedded, an ablation table

Figures are drawn on ``matplotlib.figure.Figure`` objects (the Agg canvas), never through pyplot, so the
module changes no global backend and leaks no open figures.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from xmodal.errors import DataError

RetrievalExample = tuple[str, Sequence[Path | str], Sequence[bool]]
"""(query text, top-K image paths best first, K flags: the image is a correct match)."""

CORRECT = "#2ca02c"
WRONG = "#c8c8c8"


# --------------------------------------------------------------------------------------------- loss curve


def read_loss_log(path: Path) -> list[dict[str, float]]:
    """The numeric fields of each record of a JSONL training log that has a ``"step"``.

    Lines without a step (the run's ``{"config": ...}`` header) are skipped, as are non-numeric values.

    Raises:
        DataError: the file is missing, a line is not a JSON object, or no record has a ``"loss"``.
    """
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise DataError(f"cannot read training log {path}: {e.strerror}") from None
    records = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: not a JSON object ({e.msg})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{lineno}: not a JSON object")
        if isinstance(rec.get("step"), int | float):
            records.append({k: float(v) for k, v in rec.items() if isinstance(v, int | float)})
    if not any("loss" in r for r in records):
        raise DataError(f"{path}: no record has a 'loss' key")
    return records


def smooth(values: Sequence[float] | np.ndarray, window: float) -> np.ndarray:
    """Debiased exponential moving average (as TensorBoard's smoothing) with time constant ``window``.

    Args:
        values: (T,) series; NaN entries stay NaN and do not enter the average.
        window: steps of memory; beta = 1 - 1/window (window <= 1 returns the input).

    Returns:
        (T,) smoothed series; the first value equals the first input.
    """
    x = np.asarray(values, dtype=np.float64)
    beta = 1.0 - 1.0 / max(window, 1.0)
    out = np.full_like(x, np.nan)
    avg, seen = 0.0, 0
    for t, v in enumerate(x):
        if np.isnan(v):
            continue
        avg, seen = beta * avg + (1.0 - beta) * v, seen + 1
        out[t] = avg / (1.0 - beta**seen) if beta > 0 else v
    return out


def plot_loss(records: Sequence[Mapping[str, float]], path: Path) -> None:
    """Writes the loss figure: train loss (raw + smoothed, with ``val/loss`` if logged), then a panel for
    the other ``val/...`` metrics (ranks left out: another scale) and one for ``lr`` when the log has them."""
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val_keys = list(dict.fromkeys(k for r in records for k in r if k.startswith("val/")))
    other_val = [k for k in val_keys if k != "val/loss" and "rank" not in k]
    has_lr = any("lr" in r for r in records)
    panels = 1 + bool(other_val) + has_lr
    fig = Figure(figsize=(5.5 * panels, 4.0), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]

    steps, loss = np.array([s for s, _ in train]), np.array([v for _, v in train])
    ax = axes[0]
    ax.plot(steps, loss, color="C0", alpha=0.3, lw=0.8, label="train (raw)")
    ax.plot(steps, smooth(loss, window=len(loss) / 25), color="C0", lw=2, label="train (smoothed)")
    if "val/loss" in val_keys:
        pts = [(r["step"], r["val/loss"]) for r in records if "val/loss" in r]
        ax.plot(*zip(*pts, strict=True), "o-", color="C3", label="val")
    ax.set(xlabel="step", ylabel="loss", title="training loss")
    ax.grid(alpha=0.3)
    ax.legend()

    panel = 1
    if other_val:
        ax = axes[panel]
        for i, key in enumerate(other_val):
            pts = [(r["step"], r[key]) for r in records if key in r]
            ax.plot(*zip(*pts, strict=True), "o-", color=f"C{i + 1}", label=key.removeprefix("val/"))
        ax.set(xlabel="step", title="validation")
        ax.grid(alpha=0.3)
        ax.legend()
        panel += 1
    if has_lr:
        ax = axes[panel]
        pts = [(r["step"], r["lr"]) for r in records if "lr" in r]
        ax.plot(*zip(*pts, strict=True), color="C7")
        ax.set(xlabel="step", ylabel="lr", title="learning rate")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.15)


# ---------------------------------------------------------------------------------------- retrieval grid


def _load_rgb(path: Path | str) -> np.ndarray:
    """An image as (H, W, 3) uint8, transparency composited over white (emoji are RGBA)."""
    try:
        with Image.open(path) as im:
            rgba = im.convert("RGBA")
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(canvas, rgba).convert("RGB"))


def _frame(ax: Axes, color: str, width: float) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_color(color)
        spine.set_linewidth(width)


def plot_retrieval_grid(examples: Sequence[RetrievalExample], path: Path) -> None:
    """Writes one row per query: its text, then its retrieved images best first, correct ones framed
    green (thick) and the others grey (thin)."""
    if not examples:
        raise ValueError("no retrieval examples to draw")
    k = max(len(paths) for _, paths, _ in examples)
    fig = Figure(figsize=(2.3 + 1.3 * k, 1.35 * len(examples) + 0.3), layout="constrained")
    axes = fig.subplots(len(examples), k + 1, squeeze=False, width_ratios=[2.0] + [1.0] * k)
    for row, (query, paths, correct) in enumerate(examples):
        text_ax = axes[row, 0]
        text_ax.axis("off")
        label = textwrap.fill(textwrap.shorten(query, 110, placeholder=" …"), 22)  # at most ~5 lines
        text_ax.text(0.0, 0.5, label, va="center", ha="left", fontsize=10)
        for col in range(k):
            ax = axes[row, col + 1]
            if col >= len(paths):
                ax.axis("off")
                continue
            ax.imshow(_load_rgb(paths[col]))
            _frame(ax, CORRECT if correct[col] else WRONG, 4.0 if correct[col] else 1.0)
            if row == 0:
                ax.set_title(f"#{col + 1}", fontsize=9)
    fig.suptitle("text → image: top retrieved (green = correct)", fontsize=11)
    fig.savefig(path, dpi=100, bbox_inches="tight", pad_inches=0.15)


# -------------------------------------------------------------------------------------- confusion matrix


def plot_confusion(confusion: Any, classnames: Sequence[str], path: Path) -> None:
    """Writes a confusion matrix (C, C) of counts (rows true) normalised per row, cells annotated."""
    cm = torch.as_tensor(confusion, dtype=torch.float64).numpy()
    c = len(classnames)
    if cm.shape != (c, c):
        raise ValueError(f"confusion has shape {cm.shape}, expected ({c}, {c}) for {c} class names")
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)  # (C, C), rows sum to 1
    size = max(5.0, 0.55 * c + 2.5)
    fig = Figure(figsize=(size + 1.0, size), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    if c <= 30:
        for i in range(c):
            for j in range(c):
                color = "white" if norm[i, j] > 0.5 else "black"
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(c), classnames, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(c), classnames)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix (normalised per true class)")
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.15)


# ------------------------------------------------------------------------------------------------ markdown


def _decimals(v: float) -> int:
    """Decimals ``v`` needs: up to 4 below 10, up to 2 from 10 up, trailing zeros dropped."""
    text = f"{v:.{4 if abs(v) < 10 else 2}f}".rstrip("0")
    return len(text) - text.index(".") - 1


def _fmt(v: Any, decimals: int | None = None) -> str:
    """A table cell: ints as is, floats with ``decimals`` (default: as many as ``_decimals``), NaN as '–'."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v).replace("|", "\\|")
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "–"
    return f"{v:.{_decimals(v) if decimals is None else decimals}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table; the floats of a column share one number of decimals so they line up."""
    columns = list(zip(*rows, strict=True)) if rows else []
    decimals = [
        max((_decimals(v) for v in col if isinstance(v, float) and not math.isnan(v)), default=0)
        for col in columns
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += [
        "| " + " | ".join(_fmt(v, d) for v, d in zip(row, decimals, strict=True)) + " |" for row in rows
    ]
    return [*lines, ""]


def _is_scalar(v: Any) -> bool:
    return isinstance(v, int | float | str | bool)


def metrics_markdown(name: str, metrics: Mapping[str, Any], level: int = 3) -> list[str]:
    """Markdown tables for one metrics dict.

    Scalars go in one ``metric | value`` table; sub-dicts of scalars with the same keys (the two retrieval
    directions) share one table with a row each; other sub-dicts (per-class accuracy) get their own two-column
    table; deeper dicts recurse under a sub-heading. Lists (the raw confusion matrix) are left to the figures.
    """
    lines = [f"{'#' * level} {name}", ""]
    scalars = [(k, v) for k, v in metrics.items() if _is_scalar(v)]
    flat = {k: v for k, v in metrics.items() if isinstance(v, Mapping) and all(map(_is_scalar, v.values()))}
    deep = {k: v for k, v in metrics.items() if isinstance(v, Mapping) and k not in flat}
    if scalars:
        lines += _table(["metric", "value"], scalars)
    groups: dict[tuple[str, ...], list[str]] = {}
    for k, v in flat.items():
        groups.setdefault(tuple(v), []).append(k)
    for keys, members in groups.items():
        if len(members) > 1:
            lines += _table(["", *keys], [[m, *flat[m].values()] for m in members])
        else:
            lines += _table([members[0], "value"], list(flat[members[0]].items()))
    for k, v in deep.items():
        lines += metrics_markdown(f"{name} / {k}", v, min(level + 1, 6))
    return lines


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with ``a/b`` keys."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def ablations_markdown(ablations: Sequence[Mapping[str, Any]]) -> list[str]:
    """One row per ablation run; nested keys flattened to ``a/b``; columns are the union of all runs' keys
    in first-seen order (blank where a run lacks one)."""
    runs = [_flatten(run) for run in ablations]
    columns: dict[str, None] = {}
    for run in runs:
        columns.update(dict.fromkeys(run))
    return _table(list(columns), [[run.get(c, "") for c in columns] for run in runs])


def write_report(
    out_dir: Path | str,
    metrics: Mapping[str, Any],
    *,
    loss_log: Path | str | None = None,
    retrieval_examples: Sequence[RetrievalExample] | None = None,
    confusion: Any = None,
    classnames: Sequence[str] | None = None,
    ablations: Sequence[Mapping[str, Any]] | None = None,
    title: str = "xmodal report",
) -> Path:
    """Writes the figures and ``report.md`` into ``out_dir`` (created if needed).

    Args:
        out_dir: the folder.
        metrics: ``{section: metrics dict}``, e.g. ``{"retrieval": evaluate_retrieval(...),
            "zero-shot": evaluate_zero_shot(...)}``; a flat dict of scalars is one section.
        loss_log: JSONL training log (``"step"``, ``"loss"``, optionally ``"lr"`` and ``"val/..."`` keys)
            → ``loss.png``.
        retrieval_examples: ``(query, [image paths], [correct flags])`` per row → ``retrieval_grid.png``.
        confusion: (C, C) counts, rows true (tensor, array or nested list) → ``confusion.png``; needs
            ``classnames`` (C names).
        ablations: one dict per run (name, settings, metrics) → a table in ``report.md``.
        title: the report's heading.

    A figure whose input is None is skipped, along with its section. Returns the path of ``report.md``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# {title}", ""]

    md += ["## Metrics", ""]
    if all(_is_scalar(v) for v in metrics.values()):
        md += metrics_markdown("summary", metrics)
    else:
        for section, values in metrics.items():
            if isinstance(values, Mapping):
                md += metrics_markdown(section, values)
            elif _is_scalar(values):
                md += _table(["metric", "value"], [(section, values)])

    if loss_log is not None:
        records = read_loss_log(Path(loss_log))
        plot_loss(records, out / "loss.png")
        last = [r for r in records if "loss" in r][-1]
        md += ["## Training loss", "", f"Final step {_fmt(last['step'])}: loss {_fmt(last['loss'])}.", ""]
        md += ["![training loss](loss.png)", ""]
    if retrieval_examples:
        plot_retrieval_grid(retrieval_examples, out / "retrieval_grid.png")
        hits = sum(bool(c[0]) for _, _, c in retrieval_examples if c)
        md += ["## Retrieval examples", ""]
        md += [f"Top-1 correct for {hits} of {len(retrieval_examples)} example queries.", ""]
        md += ["![text to image retrieval](retrieval_grid.png)", ""]
    if confusion is not None:
        if classnames is None:
            raise ValueError("a confusion matrix needs its class names")
        plot_confusion(confusion, classnames, out / "confusion.png")
        md += ["## Confusion matrix", "", "![confusion matrix](confusion.png)", ""]
    if ablations:
        md += ["## Ablations", "", *ablations_markdown(ablations)]

    path = out / "report.md"
    path.write_text("\n".join(md).rstrip() + "\n")
    return path
