"""Line charts as inline SVG, drawn on the server: no chart library, no script, and a data table
beside each chart for screen readers and for anyone who wants the numbers.

Every text that goes into the SVG is escaped; the markup is returned as ``Markup`` so the
template inserts it as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from markupsafe import Markup, escape

WIDTH: Final = 640
HEIGHT: Final = 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 12, 16, 36
COLOURS: Final = ("#0a7d5a", "#cf222e", "#0969da", "#8250df")


@dataclass(frozen=True, slots=True)
class Line:
    label: str
    points: Sequence[tuple[datetime, float]]
    colour: str | None = None


def _percent(value: float) -> str:
    return f"{value * 100:.1f} %"


def line_chart(
    title: str,
    lines: Sequence[Line],
    *,
    threshold: float | None = None,
    threshold_label: str = "threshold",
) -> Markup:
    """A chart of fractions (0..1) over time, with an optional horizontal threshold."""
    moments = [at for line in lines for at, _ in line.points]
    values = [v for line in lines for _, v in line.points]
    if threshold is not None:
        values.append(threshold)
    if not moments:
        return Markup('<p class="c-hint">No data yet: nothing has been sent.</p>')
    top = max([*values, 0.01]) * 1.15
    start, end = min(moments), max(moments)
    span = (end - start).total_seconds() or 1.0
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM

    def x(at: datetime) -> float:
        return _LEFT + plot_w * (at - start).total_seconds() / span

    def y(value: float) -> float:
        return _TOP + plot_h * (1 - value / top)

    parts = [
        f'<svg class="c-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="#ffffff" '
        'stroke="#d0d7de"/>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        value = top * fraction
        parts.append(
            f'<text x="{_LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#57606a">{escape(_percent(value))}</text>'
        )
    for at, anchor in ((start, "start"), (end, "end")):
        parts.append(
            f'<text x="{x(at):.1f}" y="{HEIGHT - 18}" text-anchor="{anchor}" font-size="11" '
            f'fill="#57606a">{escape(at.strftime("%d %b %H:%M"))}</text>'
        )
    if threshold is not None:
        parts.append(
            f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y(threshold):.1f}" '
            f'y2="{y(threshold):.1f}" stroke="#bf8700" stroke-dasharray="6 4"/>'
        )
        parts.append(
            f'<text x="{WIDTH - _RIGHT - 4}" y="{y(threshold) - 4:.1f}" text-anchor="end" '
            f'font-size="11" fill="#9a6700">{escape(threshold_label)} '
            f"{escape(_percent(threshold))}</text>"
        )
    for n, line in enumerate(lines):
        colour = line.colour or COLOURS[n % len(COLOURS)]
        coords = " ".join(f"{x(at):.1f},{y(v):.1f}" for at, v in line.points)
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2.5" points="{coords}"/>'
        )
        parts.append(
            f'<text x="{_LEFT + 8 + 170 * n}" y="{HEIGHT - 4}" font-size="12" '
            f'fill="{colour}">■ {escape(line.label)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True, slots=True)
class Bars:
    """One series of a bar chart: a value per label, drawn in one colour."""

    label: str
    values: Sequence[int]
    colour: str | None = None


def bar_chart(title: str, labels: Sequence[str], series: Sequence[Bars]) -> Markup:
    """Grouped vertical bars (a group per label, a bar per series), counts on a shared axis;
    labels are thinned so they never overlap."""
    if not labels or not any(v for s in series for v in s.values):
        return Markup('<p class="c-hint">Nothing in these dates.</p>')
    top = max(max(s.values, default=0) for s in series) or 1
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    group = plot_w / len(labels)
    bar = max(1.0, group * 0.8 / max(len(series), 1))
    every = max(1, int(len(labels) / (plot_w / 64)) + (1 if len(labels) > plot_w / 64 else 0))

    def y(value: float) -> float:
        return _TOP + plot_h * (1 - value / top)

    parts = [
        f'<svg class="c-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="#ffffff" '
        'stroke="#d0d7de"/>',
    ]
    for value in sorted({0, top // 2, top}):
        parts.append(
            f'<text x="{_LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#57606a">{value}</text>'
        )
    for n, label in enumerate(labels):
        left = _LEFT + group * n + group * 0.1
        for k, one in enumerate(series):
            value = one.values[n] if n < len(one.values) else 0
            if not value:
                continue
            colour = one.colour or COLOURS[k % len(COLOURS)]
            parts.append(
                f'<rect x="{left + bar * k:.1f}" y="{y(value):.1f}" width="{bar:.1f}" '
                f'height="{_TOP + plot_h - y(value):.1f}" fill="{colour}">'
                f"<title>{escape(label)}: {escape(one.label)} {value}</title></rect>"
            )
        if n % every == 0:
            parts.append(
                f'<text x="{left + group * 0.4:.1f}" y="{HEIGHT - 20}" text-anchor="middle" '
                f'font-size="11" fill="#57606a">{escape(label)}</text>'
            )
    for k, one in enumerate(series):
        colour = one.colour or COLOURS[k % len(COLOURS)]
        parts.append(
            f'<text x="{_LEFT + 8 + 170 * k}" y="{HEIGHT - 4}" font-size="12" '
            f'fill="{colour}">■ {escape(one.label)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
