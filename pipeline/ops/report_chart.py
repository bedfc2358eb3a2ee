"""The trend of the last issues as an SVG line chart: drawn here, served by the app, no JavaScript.

Built with ElementTree, so every label is escaped. Accessible: ``role="img"`` with a ``<title>`` and a
``<desc>`` that says every figure in words; the series differ by dash and marker, not only by colour.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.ops.report import TrendRow

SVG_NS = "http://www.w3.org/2000/svg"
WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 56, 44


@dataclass(frozen=True)
class Series:
    label: str
    value: Callable[[TrendRow], float | None]
    colour: str
    dash: str


SERIES = (
    Series("Readers who voted (%)", lambda t: t.pct(t.voters), "#1a7f37", "none"),
    Series("Clicks per 100 readers", lambda t: t.pct(t.clicks), "#0969da", "6 4"),
    Series("Unsubscribed (%)", lambda t: t.pct(t.unsubscribed), "#b42318", "2 3"),
)


def trend_description(trend: list[TrendRow]) -> str:
    """The chart in words: its ``<desc>``, and the page's text alternative."""
    if not trend:
        return "No issue has been sent yet: there is no trend to show."
    parts = []
    for t in trend:
        shares = ", ".join(f"{s.label.lower()} {_shown(s.value(t))}" for s in SERIES)
        parts.append(f"{t.week}: {t.sent} sent, {t.delivered} delivered; {shares}.")
    return " ".join(parts)


def _shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


def trend_svg(trend: list[TrendRow]) -> str:
    svg = ET.Element(
        "svg",
        {
            "xmlns": SVG_NS,
            "viewBox": f"0 0 {WIDTH} {HEIGHT}",
            "width": str(WIDTH),
            "height": str(HEIGHT),
            "role": "img",
            "aria-labelledby": "trend-title trend-desc",
            "font-family": "sans-serif",
            "font-size": "12",
        },
    )
    ET.SubElement(svg, "title", id="trend-title").text = f"Trend over the last {len(trend)} sent issues"
    ET.SubElement(svg, "desc", id="trend-desc").text = trend_description(trend)
    ET.SubElement(svg, "rect", width=str(WIDTH), height=str(HEIGHT), fill="#ffffff")
    values = [v for t in trend for s in SERIES if (v := s.value(t)) is not None]
    top = _nice_top(max(values, default=0.0))
    _axes(svg, trend, top)
    for index, series in enumerate(SERIES):
        _legend(svg, series, index)
        _line(svg, series, trend, top, index)
    return ET.tostring(svg, encoding="unicode")


def _nice_top(highest: float) -> float:
    """The y axis' top: 1, 2 or 5 times a power of ten, at least 10 (%)."""
    if highest <= 10:
        return 10.0
    power = 10.0 ** math.floor(math.log10(highest))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= highest)


def _x(index: int, count: int) -> float:
    span = WIDTH - LEFT - RIGHT
    return LEFT + (span / 2 if count == 1 else span * index / (count - 1))


def _y(value: float, top: float) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - value / top)


def _axes(svg: ET.Element, trend: list[TrendRow], top: float) -> None:
    grid = ET.SubElement(svg, "g", stroke="#d0d7de")
    labels = ET.SubElement(svg, "g", fill="#57606a")
    for step in range(5):
        value = top * step / 4
        y = f"{_y(value, top):.1f}"
        ET.SubElement(grid, "line", x1=str(LEFT), x2=str(WIDTH - RIGHT), y1=y, y2=y)
        _el(labels, "text", x=LEFT - 6, y=y, text_anchor="end", dy=4).text = f"{value:g}"
    for index, t in enumerate(trend):
        x = _x(index, len(trend))
        _el(labels, "text", x=x, y=HEIGHT - BOTTOM + 18, text_anchor="middle").text = t.week
    if not trend:
        _el(labels, "text", x=WIDTH // 2, y=HEIGHT // 2, text_anchor="middle").text = "No issue sent yet"


def _legend(svg: ET.Element, series: Series, index: int) -> None:
    x = LEFT + index * 190
    group = ET.SubElement(svg, "g")
    _el(
        group, "line", x1=x, x2=x + 24, y1=20, y2=20, stroke=series.colour, stroke_width=2, stroke_dasharray=series.dash
    )
    _marker(group, index, x + 12, 20, series.colour)
    ET.SubElement(group, "text", x=str(x + 30), y="24", fill="#1f2328").text = series.label


def _line(svg: ET.Element, series: Series, trend: list[TrendRow], top: float, index: int) -> None:
    points = [(_x(i, len(trend)), _y(v, top)) for i, t in enumerate(trend) if (v := series.value(t)) is not None]
    group = ET.SubElement(svg, "g")
    if len(points) > 1:
        _el(
            group,
            "polyline",
            points=" ".join(f"{x:.1f},{y:.1f}" for x, y in points),
            fill="none",
            stroke=series.colour,
            stroke_width=2,
            stroke_dasharray=series.dash,
        )
    for x, y in points:
        _marker(group, index, x, y, series.colour)


def _el(parent: ET.Element, tag: str, **attributes: object) -> ET.Element:
    """A child element; ``text_anchor=`` is written ``text-anchor``, numbers to one decimal."""
    return ET.SubElement(
        parent,
        tag,
        {k.replace("_", "-"): f"{v:.1f}" if isinstance(v, float) else str(v) for k, v in attributes.items()},
    )


def _marker(parent: ET.Element, index: int, x: float, y: float, colour: str) -> None:
    """A circle, a square or a triangle: the series are told apart without colour."""
    if index == 0:
        ET.SubElement(parent, "circle", cx=f"{x:.1f}", cy=f"{y:.1f}", r="4", fill=colour)
    elif index == 1:
        ET.SubElement(parent, "rect", x=f"{x - 4:.1f}", y=f"{y - 4:.1f}", width="8", height="8", fill=colour)
    else:
        corners = f"{x:.1f},{y - 5:.1f} {x - 5:.1f},{y + 4:.1f} {x + 5:.1f},{y + 4:.1f}"
        ET.SubElement(parent, "polygon", points=corners, fill=colour)
