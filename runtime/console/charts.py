"""Server-rendered SVG charts for the console's incident page: one series around an incident's onset.

`render_chart` is a pure function from a `ChartSpec` to SVG text: no JavaScript, nothing
fetched, readable at a glance. It draws the series as a line, the anomalies as red dots,
change events as dashed orange verticals, the onset as a grey vertical, the action as a
purple vertical and the recovery window as a green band. Every drawn element carries a class
(`anomaly-marker`, `change-line`, `onset-line`, `action-line`, `recovery-window`) so the
browser tests and a user's stylesheet can find it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

WIDTH = 560
HEIGHT = 190
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 14, 22, 30
_TICK_STEPS_S = (60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)
_MAX_X_TICKS = 8


@dataclass(frozen=True, slots=True)
class Marker:
    """An instant on the chart with a short label (anomaly, change event, action)."""

    ts: datetime
    label: str
    value: float | None = None
    """For anomalies: the level the detector reported, drawn as a dot at that height."""


@dataclass(frozen=True, slots=True)
class ChartSpec:
    """Everything one chart shows. Times outside [start, end] are clipped, not drawn."""

    title: str
    start: datetime
    end: datetime
    points: Sequence[tuple[datetime, float]]
    onset: datetime | None = None
    anomalies: Sequence[Marker] = ()
    changes: Sequence[Marker] = ()
    action: Marker | None = None
    recovery: tuple[datetime, datetime] | None = None
    recovery_pending: bool = False
    """True while the recovery window is still running (drawn hatched, with its projected end)."""
    baseline: float | None = None
    unit: str = ""
    css_id: str = ""

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(
                f"chart {self.title!r}: end {self.end.isoformat()} is not after start {self.start.isoformat()}"
            )


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 10_000 or magnitude < 0.001:
        return f"{value:.3g}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.3g}"
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _relative(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes == 0:
        return "0"
    sign = "+" if minutes > 0 else "\u2212"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60}h{minutes % 60:02d}" if minutes >= 120 else f"{sign}{minutes}m"


def _y_range(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if math.isclose(lo, hi, rel_tol=1e-9, abs_tol=1e-12):
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    bottom = lo - pad
    if lo >= 0 > bottom:
        bottom = 0.0  # non-negative signals keep a zero floor rather than a negative axis
    return bottom, hi + pad


class _Plot:
    """Maps times and values to SVG coordinates for one chart and collects its elements."""

    def __init__(self, spec: ChartSpec) -> None:
        self.spec = spec
        self.span_s = (spec.end - spec.start).total_seconds()
        self.w = WIDTH - _LEFT - _RIGHT
        self.h = HEIGHT - _TOP - _BOTTOM
        self.points = [(ts, v) for ts, v in spec.points if self.inside(ts)]
        self.anomalies = [m for m in spec.anomalies if self.inside(m.ts)]
        values = [v for _, v in self.points] + [m.value for m in self.anomalies if m.value is not None]
        if spec.baseline is not None:
            values.append(spec.baseline)
        self.lo, self.hi = _y_range(values) if values else (0.0, 1.0)
        self.parts: list[str] = []

    def inside(self, ts: datetime) -> bool:
        return self.spec.start <= ts <= self.spec.end

    def x(self, ts: datetime) -> float:
        return _LEFT + self.w * (ts - self.spec.start).total_seconds() / self.span_s

    def y(self, value: float) -> float:
        return _TOP + self.h * (1 - (value - self.lo) / (self.hi - self.lo))

    def frame(self) -> None:
        spec, title = self.spec, escape(self.spec.title)
        unit = f' <tspan fill="#57606a" font-weight="400">({escape(spec.unit)})</tspan>' if spec.unit else ""
        css_id = f' id="{escape(spec.css_id)}"' if spec.css_id else ""
        self.parts += [
            f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{title}" data-series="{title}"{css_id}>',
            f"<title>{title}</title>",
            f'<rect x="{_LEFT}" y="{_TOP}" width="{self.w}" height="{self.h}" fill="#ffffff" stroke="#d0d7de"/>',
            f'<text x="{_LEFT}" y="14" font-size="12" font-weight="600" fill="#1f2328">{title}{unit}</text>',
        ]

    def recovery(self) -> None:
        spec = self.spec
        if spec.recovery is None:
            return
        r_start, r_end = max(spec.recovery[0], spec.start), min(spec.recovery[1], spec.end)
        if r_end <= r_start:
            return
        x0, x1 = self.x(r_start), self.x(r_end)
        label = "recovery window (running)" if spec.recovery_pending else "recovery window"
        self.parts.append(
            f'<rect class="recovery-window" x="{x0:.1f}" y="{_TOP}" width="{x1 - x0:.1f}" height="{self.h}" '
            f'fill="#2da44e" fill-opacity="{0.08 if spec.recovery_pending else 0.15}" '
            f'stroke="#2da44e" stroke-opacity="0.5" '
            f'stroke-dasharray="{"4 3" if spec.recovery_pending else "none"}">'
            f"<title>{label}: {r_start:%H:%M:%S} to {r_end:%H:%M:%S} UTC</title></rect>"
        )

    def axes(self) -> None:
        """Y labels at bottom, middle and top; x ticks in minutes from the onset (or the start)."""
        spec = self.spec
        for value in (self.lo, (self.lo + self.hi) / 2, self.hi):
            y = self.y(value)
            self.parts.append(
                f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eaeef2"/>'
                f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end" fill="#57606a">'
                f"{_fmt(value)}</text>"
            )
        origin = spec.onset or spec.start
        step = next((s for s in _TICK_STEPS_S if self.span_s / s <= _MAX_X_TICKS), _TICK_STEPS_S[-1])
        first = math.ceil((spec.start - origin).total_seconds() / step)
        last = math.floor((spec.end - origin).total_seconds() / step)
        for k in range(first, last + 1):
            x = self.x(origin + timedelta(seconds=k * step))
            self.parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{HEIGHT - _BOTTOM}" y2="{HEIGHT - _BOTTOM + 4}" '
                'stroke="#8c959f"/>'
                f'<text x="{x:.1f}" y="{HEIGHT - _BOTTOM + 15}" font-size="10" text-anchor="middle" fill="#57606a">'
                f"{_relative(k * step)}</text>"
            )
        if spec.baseline is not None:
            y = self.y(spec.baseline)
            self.parts.append(
                f'<line class="baseline-line" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="#8c959f" stroke-dasharray="2 3"><title>baseline {_fmt(spec.baseline)}</title></line>'
            )

    def vertical(self, css: str, marker: Marker, color: str, dash: str, *, text: str, row: int) -> None:
        """A vertical line with a short caption; each kind has its own caption row so they never overlap."""
        if not self.inside(marker.ts):
            return
        x = self.x(marker.ts)
        flip = x > WIDTH - _RIGHT - 90  # near the right edge: caption to the left of the line
        tx, anchor = (x - 3, "end") if flip else (x + 3, "start")
        self.parts.append(
            f'<g class="{css}"><line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{HEIGHT - _BOTTOM}" stroke="{color}" '
            f'stroke-width="1.5" stroke-dasharray="{dash}"/>'
            f'<text x="{tx:.1f}" y="{_TOP + 10 + 11 * row}" font-size="10" text-anchor="{anchor}" fill="{color}">'
            f"{escape(text)}</text><title>{escape(marker.label)} at {marker.ts:%H:%M:%S} UTC</title></g>"
        )

    def series(self) -> None:
        if self.points:
            coords = " ".join(f"{self.x(ts):.1f},{self.y(v):.1f}" for ts, v in self.points)
            self.parts.append(
                f'<polyline class="series-line" points="{coords}" fill="none" stroke="#0969da" stroke-width="1.6" '
                'stroke-linejoin="round"/>'
            )
        else:
            self.parts.append(
                f'<text class="no-data" x="{_LEFT + self.w / 2:.1f}" y="{_TOP + self.h / 2:.1f}" font-size="12" '
                'text-anchor="middle" fill="#57606a">no samples in this window</text>'
            )
        for anomaly in self.anomalies:
            value = anomaly.value if anomaly.value is not None else (self.lo + self.hi) / 2
            self.parts.append(
                f'<circle class="anomaly-marker" cx="{self.x(anomaly.ts):.1f}" cy="{self.y(value):.1f}" r="4.5" '
                f'fill="#cf222e" stroke="#ffffff" stroke-width="1.5"><title>{escape(anomaly.label)} at '
                f"{anomaly.ts:%H:%M:%S} UTC</title></circle>"
            )


def render_chart(spec: ChartSpec) -> str:
    """The chart as an inline ``<svg>`` element (a string, already escaped)."""
    plot = _Plot(spec)
    plot.frame()
    plot.recovery()  # first, so every line draws over the band
    plot.axes()
    if spec.onset is not None:
        plot.vertical("onset-line", Marker(spec.onset, "onset"), "#6e7781", "1 2", text="onset", row=0)
    for change in spec.changes:
        plot.vertical("change-line", change, "#bc4c00", "5 3", text="change", row=1)
    if spec.action is not None:
        plot.vertical("action-line", spec.action, "#8250df", "none", text=spec.action.label.split(" ")[0], row=2)
    plot.series()
    plot.parts.append("</svg>")
    return "".join(plot.parts)
