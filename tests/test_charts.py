"""The console's SVG charts: well-formed, every label escaped, no script or style
attribute, empty data drawn without error, bars and lines to scale."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from markupsafe import Markup

from dsar.console import charts
from dsar.console.charts import Bar, Series

NS = {"svg": "http://www.w3.org/2000/svg"}
HOSTILE = '<script>alert("x")</script> & \'quoted\''


def parsed(markup: Markup) -> ET.Element:
    """The chart as XML (it must parse: escaping done right), checked for what the
    console's CSP would refuse."""
    assert isinstance(markup, Markup)
    assert "<script" not in markup
    root = ET.fromstring(str(markup))  # noqa: S314 - our own markup, under test
    for element in root.iter():
        assert not any(name == "style" or name.startswith("on") for name in element.attrib)
    return root


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{{{NS['svg']}}}text")]


def bar_widths(root: ET.Element) -> list[float]:
    return [float(r.get("width", "0")) for r in root.iter(f"{{{NS['svg']}}}rect")]


def test_a_bar_chart_names_itself_and_labels_each_bar_with_its_value() -> None:
    root = parsed(charts.bar_chart("c", "Tasks failing", [Bar("crm", 3, "(2 failed)"),
                                                         Bar("mail", 1)], describedby="t"))
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "c-title" and root.get("aria-describedby") == "t"
    title = root.find("svg:title", NS)
    assert title is not None and title.get("id") == "c-title" and title.text == "Tasks failing"
    assert texts(root) == ["crm", "3 (2 failed)", "mail", "1"]
    assert [t.text for t in root.iter(f"{{{NS['svg']}}}title")][1:] == [
        "crm: 3 (2 failed)", "mail: 1"]


def test_labels_are_escaped_in_text_and_titles() -> None:
    markup = charts.bar_chart("c", HOSTILE, [Bar(HOSTILE, 1, HOSTILE)])
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    root = parsed(markup)
    assert root.find("svg:title", NS).text == HOSTILE  # type: ignore[union-attr]
    line = parsed(charts.line_chart("l", HOSTILE, [HOSTILE, "b"], [Series(HOSTILE, [1, 2])]))
    assert HOSTILE[:charts.LABEL_CHARS - 1] + "\u2026" in texts(line)  # cut, still escaped
    assert HOSTILE in [t.text for t in line.iter(f"{{{NS['svg']}}}title")]


def test_ids_given_are_escaped_too() -> None:
    root = parsed(charts.bar_chart('x" onload="y', "t", [], describedby='"><b>'))
    assert root.get("id") == 'x" onload="y' and root.get("aria-describedby") == '"><b>'


def test_bars_are_to_scale_and_zero_has_no_bar() -> None:
    root = parsed(charts.bar_chart("c", "t", [Bar("a", 10), Bar("b", 5), Bar("c", 0)]))
    widths = bar_widths(root)
    assert widths[0] == pytest.approx(2 * widths[1]) and widths[2] == 0
    assert widths[0] == pytest.approx(330)  # the largest fills the bars' width


def test_empty_charts_draw_without_error() -> None:
    bars = parsed(charts.bar_chart("c", "Nothing", []))
    assert bar_widths(bars) == [] and bars.find("svg:title", NS) is not None
    lines = parsed(charts.line_chart("l", "Nothing", [], []))
    assert texts(lines) == ["0", "1"]  # the axis alone, 0 to 1
    flat = parsed(charts.line_chart("l", "Zeros", ["a", "b"], [Series("s", [0, 0])]))
    assert {"0", "1", "a", "b", "s"} <= set(texts(flat))


def test_a_line_chart_has_axis_ticks_a_legend_and_names_at_the_ends() -> None:
    labels = [f"w{i}" for i in range(9)]
    root = parsed(charts.line_chart(
        "l", "Per week", labels,
        [Series("access", [0, 3, 7, 2, 9, 4, 1, 0, 5]), Series("erasure", [1] * 9)]))
    said = texts(root)
    assert ["0", "5", "10"] == said[:3]  # 0 to 10 by 5 for a top of 9
    assert ["w0", "w4", "w8"] == said[3:6]  # every fourth week, and the last
    assert said.count("access") == 2 and said.count("erasure") == 2  # at the end, legend
    paths = [p for p in root.iter(f"{{{NS['svg']}}}path") if p.get("fill") == "none"]
    assert len(paths) == 2
    assert paths[0].get("stroke-dasharray") is None
    assert paths[1].get("stroke-dasharray") == "8 4"  # told apart without colour
    assert len(list(root.iter(f"{{{NS['svg']}}}circle"))) == 9 + 1  # markers + legend
    assert len(list(root.iter(f"{{{NS['svg']}}}rect"))) == 9 + 1


def test_points_are_to_scale() -> None:
    root = parsed(charts.line_chart("l", "t", ["a", "b", "c"], [Series("s", [0, 5, 10])]))
    path = next(p for p in root.iter(f"{{{NS['svg']}}}path") if p.get("fill") == "none")
    ys = [float(y) for y in re.findall(r"[ML][\d.]+ ([\d.]+)", path.get("d", ""))]
    assert ys[0] - ys[1] == pytest.approx(ys[1] - ys[2]) and ys[0] > ys[1]


def test_end_labels_that_would_overlap_are_moved_apart() -> None:
    assert charts._spread([100.0, 100.0, 50.0]) == [100.0, 116.0, 50.0]
    assert charts._spread([10.0, 60.0]) == [10.0, 60.0]


@pytest.mark.parametrize(("maximum", "top", "step"), [
    (0, 1, 1), (1, 1, 1), (3, 3, 1), (9, 10, 5), (10, 10, 5), (37, 40, 10), (120, 150, 50),
    (1234, 1500, 500)])
def test_scale_steps_of_one_two_or_five(maximum: float, top: float, step: float) -> None:
    assert charts.scale(maximum) == (top, step)


def test_numbers() -> None:
    assert charts.number(1234) == "1,234" and charts.number(2.0) == "2"
    assert charts.number(12.25) == "12.2"


def test_the_last_x_label_never_crowds_the_one_before() -> None:
    root = parsed(charts.line_chart("l", "t", [f"w{i}" for i in range(26)],
                                    [Series("s", [1] * 26)]))
    under = [t.text for t in root.iter(f"{{{NS['svg']}}}text")
             if t.get("text-anchor") == "middle"]
    assert under == ["w0", "w4", "w8", "w12", "w16", "w20", "w25"]  # not w24 beside w25
