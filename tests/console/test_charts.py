"""The incident page's SVG charts: markers where they belong, clipping, escaping, readable axes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

import pytest

from runtime.console import ChartSpec, Marker, render_chart

T0 = datetime(2026, 3, 2, 9, 40, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"


def _spec(**overrides: object) -> ChartSpec:
    points = [(T0 + timedelta(seconds=10 * i), 100.0 if i < 90 else 400.0) for i in range(180)]
    base: dict[str, object] = {
        "title": "support-chat / latency_p95_ms",
        "start": T0,
        "end": T0 + timedelta(minutes=30),
        "points": points,
        "onset": T0 + timedelta(minutes=15),
        "anomalies": [Marker(T0 + timedelta(minutes=15, seconds=20), "robust shift", 400.0)],
        "changes": [Marker(T0 + timedelta(minutes=14), "provider llm-alpha -> llm-beta")],
        "action": Marker(T0 + timedelta(minutes=20), "failover_provider on llm-alpha"),
        "recovery": (T0 + timedelta(minutes=20), T0 + timedelta(minutes=25)),
        "baseline": 100.0,
        "unit": "ms",
    }
    base.update(overrides)
    return ChartSpec(**base)  # type: ignore[arg-type]


def _parse(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)


def _x_of_line(root: ElementTree.Element, css: str) -> float:
    group = root.find(f".//{SVG}g[@class='{css}']")
    assert group is not None, f"no {css}"
    line = group.find(f"{SVG}line")
    assert line is not None
    return float(line.attrib["x1"])


def test_chart_is_well_formed_svg_with_every_layer() -> None:
    """One chart parses as SVG and holds the series, anomaly, onset, change, action and recovery layers."""
    root = _parse(render_chart(_spec()))
    assert root.tag == f"{SVG}svg" and root.attrib["data-series"] == "support-chat / latency_p95_ms"
    assert root.find(f".//{SVG}polyline[@class='series-line']") is not None
    assert len(root.findall(f".//{SVG}circle[@class='anomaly-marker']")) == 1
    for css in ("onset-line", "change-line", "action-line"):
        _x_of_line(root, css)
    assert root.find(f".//{SVG}rect[@class='recovery-window']") is not None


def test_markers_sit_at_their_times_in_order() -> None:
    """Change before onset before action on the x axis, in proportion to their times."""
    root = _parse(render_chart(_spec()))
    change, onset, action = (_x_of_line(root, c) for c in ("change-line", "onset-line", "action-line"))
    assert change < onset < action
    # 14, 15 and 20 minutes into a 30-minute window: equal minutes, equal pixels
    assert (action - onset) == pytest.approx(5 * (onset - change), rel=1e-2)
    band = root.find(f".//{SVG}rect[@class='recovery-window']")
    assert band is not None and float(band.attrib["x"]) == pytest.approx(action, abs=0.2)


def test_anomaly_marker_is_drawn_at_its_reported_level() -> None:
    """The anomaly dot's height matches the level the detector reported, above the baseline line."""
    root = _parse(render_chart(_spec()))
    dot = root.find(f".//{SVG}circle[@class='anomaly-marker']")
    baseline = root.find(f".//{SVG}line[@class='baseline-line']")
    assert dot is not None and baseline is not None
    assert float(dot.attrib["cy"]) < float(baseline.attrib["y1"])  # SVG y grows downwards


def test_things_outside_the_window_are_not_drawn() -> None:
    """Points, markers and lines outside [start, end] are clipped away rather than drawn off the axes."""
    late = T0 + timedelta(hours=2)
    root = _parse(
        render_chart(
            _spec(
                anomalies=[Marker(late, "late", 1.0)],
                changes=[Marker(late, "late change")],
                action=Marker(late, "late action"),
                recovery=(late, late + timedelta(minutes=5)),
            )
        )
    )
    for css in ("anomaly-marker", "change-line", "action-line", "recovery-window"):
        assert root.find(f".//*[@class='{css}']") is None, css
    xs = [float(p.split(",")[0]) for p in root.find(f".//{SVG}polyline").attrib["points"].split()]  # type: ignore[union-attr]
    assert min(xs) >= 0 and max(xs) <= float(root.attrib["width"])


def test_x_ticks_count_minutes_from_onset() -> None:
    """Tick labels read as minutes relative to the onset, with 0 at the onset."""
    svg = render_chart(_spec())
    labels = re.findall(r'text-anchor="middle" fill="#57606a">([^<]+)</text>', svg)
    assert "0" in labels and "\u221210m" in labels and "+10m" in labels


def test_names_are_escaped() -> None:
    """Service names and change descriptions from telemetry cannot inject markup into the page."""
    svg = render_chart(
        _spec(title='<script>alert(1)</script>"', changes=[Marker(T0 + timedelta(minutes=1), "<img src=x onerror=1>")])
    )
    assert "<script>" not in svg and "<img" not in svg
    _parse(svg)  # still well-formed


def test_empty_series_says_so() -> None:
    """A series with no samples in the window shows a 'no samples' note instead of an empty plot."""
    svg = render_chart(_spec(points=[], anomalies=[], baseline=None))
    assert "no samples in this window" in svg
    _parse(svg)


def test_flat_series_still_gets_a_y_range() -> None:
    """A constant series is drawn mid-height with a padded axis, not divided by zero."""
    flat = [(T0 + timedelta(seconds=10 * i), 5.0) for i in range(100)]
    root = _parse(render_chart(_spec(points=flat, anomalies=[], baseline=None)))
    ys = {float(p.split(",")[1]) for p in root.find(f".//{SVG}polyline").attrib["points"].split()}  # type: ignore[union-attr]
    assert len(ys) == 1


def test_window_must_not_be_empty() -> None:
    """A chart whose end is not after its start is refused with both times in the message."""
    with pytest.raises(ValueError, match="is not after start"):
        _spec(end=T0)
