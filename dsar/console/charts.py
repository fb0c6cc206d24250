"""Charts as SVG markup, made on the server from numbers: no script, no style
attribute (the console's CSP allows neither), every label escaped.

A chart is an image to assistive technology (``role="img"``, named by its
``<title>``) and points with ``aria-describedby`` to the table that gives
the same numbers; the page puts that table beside it. Nothing is told by
colour alone: bars carry their label and value as text, and each line has its
own dash pattern and marker shape, a legend in words and its name at its end.
Colours reach at least 4.5:1 on white.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 720
FONT = 'font-family="system-ui, sans-serif" font-size="14"'
TEXT = "#1d1f21"  # 16:1 on white
MUTED = "#50565c"  # 7:1
GRID = "#c9ced3"  # gridlines only: the ticks' numbers are text
#: the lines' looks, in turn: colour, dash pattern (SVG stroke-dasharray), marker
STYLES: tuple[tuple[str, str, str], ...] = (
    ("#1d70b8", "", "circle"),  # blue, 5.2:1
    ("#8f4a00", "8 4", "square"),  # brown, 6.6:1
    (TEXT, "2 3", "triangle"),
)
#: labels longer than this are cut (with an ellipsis) in the chart; the table has them whole
LABEL_CHARS = 22
#: the least distance between two labels under the x axis (a date is about 45 wide)
LABEL_GAP = 60


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    #: said after the value, e.g. "(2 failed, 1 retrying)"
    note: str = ""


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]


def number(value: float) -> str:
    """``1,234`` for whole numbers, ``12.5`` otherwise."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def scale(maximum: float, ticks: int = 4) -> tuple[float, float]:
    """(top, step) of an axis from 0 showing ``maximum``: a step of 1, 2 or 5 times a
    power of ten, whole (counts), about ``ticks`` of them; ``(1, 1)`` for nothing."""
    if maximum <= 0:
        return 1.0, 1.0
    raw = maximum / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    step = max(step, 1.0)
    return math.ceil(maximum / step) * step, step


def _cut(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS - 1] + "\u2026"


def _open(chart_id: str, title: str, height: int, describedby: str | None) -> str:
    described = f' aria-describedby="{escape(describedby)}"' if describedby else ""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}" '
            f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" '
            f'aria-labelledby="{escape(chart_id)}-title"{described} focusable="false" {FONT}>'
            f'<title id="{escape(chart_id)}-title">{escape(title)}</title>')


def bar_chart(chart_id: str, title: str, bars: Sequence[Bar],
              describedby: str | None = None) -> Markup:
    """Horizontal bars, one a row: the label on the left, the value (and note) at the
    bar's end; the largest value fills the width (no bar for zero, negatives none)."""
    row, left, right, top = 30, 190, 520, 8
    height = top * 2 + row * max(len(bars), 1)
    most = max((b.value for b in bars), default=0) or 1  # the largest fills the width
    parts = [_open(chart_id, title, height, describedby)]
    for i, bar in enumerate(bars):
        y = top + i * row
        width = (right - left) * bar.value / most if bar.value > 0 else 0
        said = number(bar.value) + (f" {bar.note}" if bar.note else "")
        parts.append(
            f'<g><title>{escape(bar.label)}: {escape(said)}</title>'
            f'<text x="{left - 10}" y="{y + 20}" text-anchor="end" fill="{TEXT}">'
            f'{escape(_cut(bar.label))}</text>'
            f'<rect x="{left}" y="{y + 5}" width="{width:.1f}" height="{row - 10}" '
            f'fill="{STYLES[0][0]}"/>'
            f'<text x="{left + width + 8:.1f}" y="{y + 20}" fill="{TEXT}">{escape(said)}</text>'
            '</g>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - top}" '
                 f'stroke="{MUTED}"/></svg>')
    return Markup("".join(parts))  # noqa: S704 - every label above is escaped


def _marker(shape: str, x: float, y: float, colour: str) -> str:
    if shape == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{colour}"/>'
    if shape == "triangle":
        return (f'<path d="M{x:.1f} {y - 5:.1f}L{x + 5:.1f} {y + 4:.1f}L{x - 5:.1f} '
                f'{y + 4:.1f}Z" fill="{colour}"/>')
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>'


def line_chart(chart_id: str, title: str, x_labels: Sequence[str], series: Sequence[Series],
               describedby: str | None = None, label_every: int = 4) -> Markup:
    """Lines over ``x_labels`` (every ``label_every``-th written under the axis, and the
    last, never two overlapping), the y axis from 0 with its ticks; a legend in words
    above, each line's name at its end."""
    left, right, top, bottom, height = 56, 600, 44, 260, 300
    points = max(len(x_labels), 1)
    most, step = scale(max((v for s in series for v in s.values), default=0))
    xs = [left + (right - left) * i / max(points - 1, 1) for i in range(points)]

    def y_of(value: float) -> float:
        return bottom - (bottom - top) * value / most

    parts = [_open(chart_id, title, height, describedby)]
    for tick in range(int(most / step) + 1):
        y = y_of(tick * step)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" '
                     f'stroke="{GRID}"/><text x="{left - 8}" y="{y + 5:.1f}" '
                     f'text-anchor="end" fill="{TEXT}">{number(tick * step)}</text>')
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="{MUTED}"/>')
    for i, label in enumerate(x_labels):
        last = i == points - 1
        if last or (i % label_every == 0 and xs[-1] - xs[i] >= LABEL_GAP):
            parts.append(f'<text x="{xs[i]:.1f}" y="{bottom + 22}" text-anchor="middle" '
                         f'fill="{TEXT}">{escape(label)}</text>')
    ends = _spread([y_of(s.values[-1]) if s.values else bottom for s in series])
    for n, (line, end) in enumerate(zip(series, ends, strict=True)):
        parts.append(_line(line, n, xs, y_of, end, legend_x=left + 170 * n))
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every label above is escaped


def _line(line: Series, n: int, xs: Sequence[float], y_of: Callable[[float], float],
          end: float, legend_x: float) -> str:
    colour, dash, shape = STYLES[n % len(STYLES)]
    dashed = f' stroke-dasharray="{dash}"' if dash else ""
    ys = [y_of(v) for v in line.values]
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f} {y:.1f}"
                    for i, (x, y) in enumerate(zip(xs, ys, strict=False)))
    name = escape(_cut(line.name))
    return (
        f'<g><title>{escape(line.name)}</title>'
        f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2.5"{dashed}/>'
        + "".join(_marker(shape, x, y, colour) for x, y in zip(xs, ys, strict=False))
        + f'<text x="{xs[-1] + 10:.1f}" y="{end + 5:.1f}" fill="{TEXT}">{name}</text>'
        f'<line x1="{legend_x}" y1="16" x2="{legend_x + 36}" y2="16" stroke="{colour}" '
        f'stroke-width="2.5"{dashed}/>{_marker(shape, legend_x + 18, 16, colour)}'
        f'<text x="{legend_x + 44}" y="21" fill="{TEXT}">{name}</text></g>')


def _spread(ys: Sequence[float], gap: float = 16) -> list[float]:
    """The lines' end labels' heights, moved apart where they would overlap."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    placed = list(ys)
    for before, after in zip(order, order[1:], strict=False):
        placed[after] = max(placed[after], placed[before] + gap)
    return placed
