"""Metrics logs (CSV) and curves (PNG).

``train_log.csv`` holds one row per logged training step (``step``, ``epoch``, ``lr``, the loss terms,
``sec_per_step``, ``samples_per_sec``); ``eval_log.csv`` one row per evaluation (``step`` and the metrics).
A resumed run first drops the rows written after the checkpoint it resumes from, so the logs read as one
uninterrupted run. Columns are the union of the keys seen (the file is rewritten when a new one appears).

:func:`plot_curves` draws both logs as PNG figures (matplotlib, Agg backend).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class MetricsLog:
    """A CSV file of rows keyed by ``step``.

    Args:
        path: the CSV file (created with its folder).
        keep_until: on open, rows with ``step`` greater than this are dropped (resume); None keeps all.
    """

    def __init__(self, path: str | Path, *, keep_until: int | None = None):
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = []
        if self.path.is_file():
            self.rows, self.columns = read_csv(self.path)
            if keep_until is not None:
                self.rows = [r for r in self.rows if _num(r.get("step")) <= keep_until]
            else:
                self.rows = []
                self.columns = []
        self._rewrite()

    def append(self, row: Mapping[str, Any]) -> None:
        row = {k: _plain(v) for k, v in row.items()}
        new = [k for k in row if k not in self.columns]
        self.rows.append(row)
        if new:
            self.columns.extend(new)
            self._rewrite()
            return
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, fieldnames=self.columns).writerow(row)

    def _rewrite(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="", encoding="utf-8") as handle:
            if not self.columns:
                return
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.rows)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_csv(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows (as dicts of strings) and the header of a CSV file."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return rows, list(reader.fieldnames or [])


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        x, y = _num(row.get("step")), _num(row.get(key))
        if not (math.isnan(x) or math.isnan(y)):
            xs.append(x)
            ys.append(y)
    return xs, ys


def plot_curves(
    train_csv: str | Path,
    eval_csv: str | Path | None,
    out_png: str | Path,
    *,
    title: str = "",
    metrics: Sequence[str] | None = None,
) -> Path:
    """Plot loss terms and learning rate from ``train_csv`` and the metrics of ``eval_csv`` into one PNG.

    ``metrics`` selects the evaluation columns drawn (default: all but step/epoch/timing).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train_rows, train_cols = read_csv(train_csv) if Path(train_csv).is_file() else ([], [])
    eval_rows, eval_cols = read_csv(eval_csv) if eval_csv and Path(eval_csv).is_file() else ([], [])
    loss_keys = [c for c in train_cols if c == "loss" or c.startswith("loss_")]
    metric_keys = [c for c in eval_cols if c not in ("step", "epoch", "eval_seconds")]
    if metrics is not None:
        metric_keys = [c for c in metric_keys if c in metrics]
    panels = 2 + (1 if metric_keys else 0)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4))
    ax = axes[0]
    for key in loss_keys:
        xs, ys = _series(train_rows, key)
        if xs:
            ax.plot(xs, ys, label=key, linewidth=2.0 if key == "loss" else 1.0)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("training loss")
    if loss_keys:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = axes[1]
    xs, ys = _series(train_rows, "lr")
    ax.plot(xs, ys)
    ax.set_xlabel("step")
    ax.set_title("learning rate")
    ax.grid(alpha=0.3)
    if metric_keys:
        ax = axes[2]
        for key in metric_keys:
            xs, ys = _series(eval_rows, key)
            if xs:
                ax.plot(xs, ys, marker="o", label=key)
        ax.set_xlabel("step")
        ax.set_title("evaluation")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
