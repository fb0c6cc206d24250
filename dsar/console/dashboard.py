"""The dashboard: where the requests stand, how long they take, what is
failing. Open to every role; reading it runs a few aggregate queries
(:mod:`.stats`) and records nothing. Charts are SVG made here
(:mod:`.charts`), each beside a table of the same numbers.
"""

from __future__ import annotations

from datetime import datetime

from flask import Response
from markupsafe import Markup

from ..runtime import runtime
from ..workflow.states import RequestKind
from . import access, bp, charts, stats
from .queue import CLOSED
from .views import render


@bp.get("/dashboard")
@access.allow(access.EVERYONE)
def dashboard() -> Response:
    rt = runtime()
    with rt.transaction() as session:
        board = stats.dashboard(session, rt.now())
    return render("console_dashboard.html", board=board, day=day, closed=CLOSED,
                  kinds=[k.value for k in RequestKind], due_days=stats.DUE_SOON_DAYS,
                  week_count=stats.WEEKS, status_chart=status_chart(board),
                  weekly_chart=weekly_chart(board), stores_chart=stores_chart(board))


def day(moment: datetime) -> str:
    """``2 Mar 2026``: a week's Monday, in the tables."""
    return f"{moment.day} {moment:%b %Y}"


def status_chart(board: stats.Dashboard) -> Markup:
    bars = [charts.Bar(status.replace("_", " "), count)
            for status, count in board.by_status.items()]
    return charts.bar_chart("status-chart", "Requests by status", bars,
                            describedby="status-table")


def weekly_chart(board: stats.Dashboard) -> Markup:
    labels = [f"{w.starts.day} {w.starts:%b}" for w in board.weeks]
    series = [charts.Series(kind.value, [w.counts[kind.value] for w in board.weeks])
              for kind in RequestKind]
    return charts.line_chart("weekly-chart", "Requests received per week, by kind", labels,
                             series, describedby="weekly-table")


def stores_chart(board: stats.Dashboard) -> Markup:
    bars = [charts.Bar(s.connector, s.total, f"({s.failed} failed, {s.retrying} retrying)")
            for s in board.stores]
    return charts.bar_chart("stores-chart", "Tasks failing, by store", bars,
                            describedby="stores-table")
