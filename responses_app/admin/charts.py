"""Line charts drawn as inline SVG on the server: no JavaScript, no CDN, readable offline.

Pure functions of their input (no database), so they are tested without one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#6b7280"]
WIDTH, HEIGHT = 560, 210
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 28


@dataclass(frozen=True)
class Series:
    """One line: a value (or None: no data) per time bucket."""

    name: str
    color: str
    values: Sequence[float | None]
    dashed: bool = False


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is >= ``value`` (axis maxima)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value * (1 - 1e-9):
            return step * power
    return 10 * power


def compact(value: float) -> str:
    """``1.2k``, ``3.4M``, ``0.05``: short axis and tooltip numbers."""
    magnitude = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return f"{value / limit:.3g}{suffix}"
    if magnitude and magnitude < 1:
        return f"{value:.3g}"
    return f"{value:.4g}"


def line_chart(
    *,
    chart_id: str,
    labels: Sequence[str],
    series: Sequence[Series],
    fmt: Callable[[float], str] = compact,
    integer: bool = False,
    empty: str = "No data in this period.",
) -> SafeString:
    """An SVG line chart over ``labels`` (one per bucket); every point has a tooltip.

    ``integer``: counts, so the four grid steps fall on whole numbers.
    """
    count = len(labels)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    known = [v for s in series for v in s.values if v is not None]
    top = nice_ceiling(max(known)) if known else 1.0
    if integer:
        top = max(4.0, 4 * math.ceil(max(known or [0]) / 4))

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (count - 1) if count > 1 else plot_w / 2)

    def y(v: float) -> float:
        return TOP + plot_h - plot_h * (v / top)

    parts = [
        f'<svg id="{escape(chart_id)}" class="or-chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" role="img" xmlns="http://www.w3.org/2000/svg">'
    ]
    for step in range(5):  # grid lines and y labels
        value = top * step / 4
        gy = y(value)
        parts.append(
            f'<line x1="{LEFT}" y1="{gy:.1f}" x2="{WIDTH - RIGHT}" y2="{gy:.1f}" class="or-grid-line"/>'
            f'<text x="{LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end" class="or-axis">{escape(fmt(value))}</text>'
        )
    every = max(1, math.ceil(count / 6))
    for i in range(0, count, every):  # x labels
        parts.append(
            f'<text x="{x(i):.1f}" y="{HEIGHT - 8}" text-anchor="middle" class="or-axis">{escape(labels[i])}</text>'
        )
    for s in series:
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        run: list[str] = []
        runs: list[list[str]] = []
        for i, v in enumerate(s.values):
            if v is None:
                if run:
                    runs.append(run)
                run = []
                continue
            run.append(f"{x(i):.1f},{y(v):.1f}")
        if run:
            runs.append(run)
        for points in runs:
            if len(points) > 1:
                parts.append(
                    f'<polyline points="{" ".join(points)}" fill="none" stroke="{s.color}" '
                    f'stroke-width="2"{dash} class="or-line"/>'
                )
        for i, v in enumerate(s.values):
            if v is not None and (v or not s.dashed):
                parts.append(
                    f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.6" fill="{s.color}">'
                    f"<title>{escape(s.name)} · {escape(labels[i])}: {escape(fmt(v))}</title></circle>"
                )
    if not known:
        parts.append(
            f'<text x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" '
            f'class="or-empty">{escape(empty)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]
