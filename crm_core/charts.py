"""The /stats chart: one PNG with three panels drawn from ``analytics.DailySeries``: complaints
per day by category (stacked bars), average time to resolution per day, and the self-service
rate per day.

matplotlib is imported on first use (it costs ~0.5 s and tens of MB), with the Agg backend so
that no display is needed; each call builds its own Figure object (no pyplot global state), so
concurrent renders in threads cannot draw into each other's chart.
"""

import io
from typing import Any

from crm_core.services.analytics import DailySeries

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_WIDTH_IN, _HEIGHT_IN, _DPI = 9.0, 9.0, 100


def render_stats_chart(series: DailySeries, *, title: str = "") -> bytes:
    """The chart as PNG bytes (also for a period without any data: empty panels)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Fixed margins: an automatic layout draws every label several times (3x slower).
    figure = Figure(figsize=(_WIDTH_IN, _HEIGHT_IN), dpi=_DPI)
    figure.subplots_adjust(left=0.08, right=0.98, top=0.93, bottom=0.08, hspace=0.3)
    FigureCanvasAgg(figure)
    complaints, resolution, rate = figure.subplots(3, 1, sharex=True)
    labels = [day.strftime("%m-%d") for day in series.days]
    positions = list(range(len(labels)))
    _stacked_bars(complaints, positions, series.complaints_by_category)
    complaints.set_title("Complaints per day by category")
    complaints.set_ylabel("complaints")
    _line(resolution, positions, series.resolution_hours, "tab:red")
    resolution.set_title("Average time to resolution (resolved that day)")
    resolution.set_ylabel("hours")
    _line(rate, positions, [r * 100 if r is not None else None for r in series.self_service_rate])
    rate.set_title("Self-service rate: bot answers / (bot answers + requests for a person)")
    rate.set_ylabel("%")
    rate.set_ylim(0, 100)
    step = max(1, len(labels) // 15)  # at most ~15 date labels
    rate.set_xticks(positions[::step], labels[::step], rotation=45)
    if title:
        figure.suptitle(title)
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def _stacked_bars(axes: Any, positions: list[int], by_category: dict[str, list[int]]) -> None:
    bottom = [0] * len(positions)
    for category, counts in by_category.items():
        if not any(counts):
            continue
        axes.bar(positions, counts, bottom=bottom, label=category)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    if any(bottom):
        axes.legend(loc="upper left", fontsize="small", ncols=4)


def _line(axes: Any, positions: list[int], values: list[float | None], color: str = "") -> None:
    points = [(p, v) for p, v in zip(positions, values, strict=True) if v is not None]
    if points:
        xs, ys = zip(*points, strict=True)
        axes.plot(xs, ys, marker="o", color=color or None)
    axes.set_xlim(-0.5, max(len(positions) - 0.5, 0.5))
    axes.grid(True, alpha=0.3)
