"""Figures drawn with matplotlib (Agg backend, no display): training curves, Dice against label ratio or
CPU budget. Every figure is written atomically (rendered in memory, then temp name + rename)."""

from __future__ import annotations

import io
import math
from pathlib import Path

Series = dict[str, list[tuple[float, float, float]]]  # name -> [(x, y, error)]; error 0 draws no bar
Panel = tuple[str, Series, list[str] | None]  # (title, series, categorical x labels or None for numeric x)


def line_plot(series: Series, path: Path, title: str, xlabel: str, ylabel: str,
              x_labels: list[str] | None = None) -> None:
    """One panel: a line per series with error bars where the error is > 0."""
    panels_plot([(title, series, x_labels)], path, xlabel, ylabel)


def panels_plot(panels: list[Panel], path: Path, xlabel: str, ylabel: str) -> None:
    """Side-by-side panels sharing axis titles; one legend per panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(5.2 * max(1, len(panels)), 3.8), squeeze=False)
    for ax, (title, series, x_labels) in zip(axes[0], panels, strict=False):
        _draw(ax, series, x_labels)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    from medref_cli.workspace import write_bytes_atomic

    write_bytes_atomic(path, buf.getvalue())


def _draw(ax, series: Series, x_labels: list[str] | None) -> None:  # noqa: ANN001 - matplotlib Axes
    drawn = False
    for name, pts in series.items():
        pts = sorted(p for p in pts if math.isfinite(p[1]))
        if not pts:
            continue
        xs, ys, errs = zip(*pts, strict=True)
        ax.errorbar(xs, ys, yerr=[e if e > 0 else 0.0 for e in errs] if any(e > 0 for e in errs) else None,
                    marker="o", markersize=4, capsize=3, linewidth=1.6, label=name)
        drawn = True
    if x_labels:
        ax.set_xticks(range(len(x_labels)), x_labels)
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")
