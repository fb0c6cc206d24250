"""The dashboard: counts by status, due this week and overdue (their edges), paused,
days to complete (median and 90th percentile, by kind, over the window), requests per
week and kind, tasks failing per store; every number read off the page at the
fixed clock (START, a Monday 09:00 UTC), each chart beside its table."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from html.parser import HTMLParser

import pytest
from sqlalchemy import func, select

from dsar.console import stats
from dsar.models import Request, Task
from dsar.workflow import requests as flow
from tests.console.client import Console
from tests.console.conftest import START

PAGE = "/console/dashboard"
#: window_start(START): the Monday 25 weeks before START's
SINCE = datetime(2025, 9, 8, tzinfo=START.tzinfo)


class Tables(HTMLParser):
    """The text of every cell (th and td) of each row of the page's tables, by table id."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._table is not None and self._cell is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def rows(page: str, table: str) -> dict[str, list[str]]:
    """A table's body rows by their first cell (the header row left out)."""
    return {row[0]: row[1:] for row in Tables(page).tables[table][1:] if row}


def figure(page: str, name: str) -> int:
    found = re.search(rf'<div id="figure-{name}"><dt>[^<]+</dt><dd>(?:<a [^>]+>)?(\d+)', page)
    assert found, f"no figure {name}"
    return int(found.group(1))


def add(console: Console, kind: str = "access", status: str = "verified", *,
        due: timedelta = timedelta(days=20), received: timedelta = timedelta(days=3),
        received_at: datetime | None = None, took: timedelta | None = None) -> str:
    """A request of ``kind`` in ``status``, received ``received`` before the clock's now
    (or at ``received_at``), due ``due`` after now; closed ``took`` after it was received."""
    rt = console.rt
    with rt.transaction() as session:
        request = flow.submit(session, rt, kind, {"email": ["someone@example.org"]})
        request.status = status
        request.received_at = received_at or rt.now() - received
        request.due_at = rt.now() + due
        if took is not None:
            request.closed_at = request.received_at + took
        return request.id


def task(console: Console, request_id: str, connector: str, status: str,
         retrying: bool = False, step: str = "export") -> None:
    rt = console.rt
    with rt.transaction() as session:
        session.add(Task(request_id=request_id, connector=connector, step=step, status=status,
                         retrying_since=rt.now() - timedelta(hours=1) if retrying else None))


@pytest.fixture
def auditor(console: Console) -> Console:
    console.officer("audrey@example.org", "auditor")
    return console


def test_counts_by_status_due_this_week_overdue_and_paused(auditor: Console) -> None:
    micro = timedelta(microseconds=1)
    add(auditor, due=timedelta(0))  # due this moment: not yet overdue, due this week
    add(auditor, "erasure", "awaiting_review", due=timedelta(days=7) - micro)  # this week
    add(auditor, due=timedelta(days=7))  # a week away exactly: not this week
    add(auditor, "erasure", "processing", due=-micro)  # overdue by a microsecond
    add(auditor, "access", "partially_failed", due=timedelta(days=-40))  # open, overdue
    add(auditor, "erasure", "paused", due=timedelta(days=3))  # open: paused, this week
    add(auditor, "access", "paused", due=timedelta(days=30))
    add(auditor, "access", "completed", due=timedelta(days=-2), took=timedelta(days=1))
    add(auditor, "erasure", "denied", due=timedelta(days=2), took=timedelta(days=1))
    add(auditor, "access", "expired", due=timedelta(days=-9))
    page = auditor.get(PAGE)
    assert page.status_code == 200
    assert figure(page.text, "open") == 7
    assert figure(page.text, "due-soon") == 3
    assert figure(page.text, "overdue") == 2
    assert figure(page.text, "paused") == 2
    by_status = rows(page.text, "status-table")
    assert by_status == {
        "received": ["open", "0"], "verifying": ["open", "0"], "verified": ["open", "2"],
        "awaiting review": ["open", "1"], "approved": ["open", "0"],
        "processing": ["open", "1"], "partially failed": ["open", "1"], "paused": ["open", "2"],
        "cancelled": ["closed", "0"], "completed": ["closed", "1"], "denied": ["closed", "1"],
        "expired": ["closed", "1"], "All": ["", "10"]}
    # the figures link to the queue, which counts the same requests
    assert 'href="/console/?due=overdue">2<span' in page.text
    assert "Showing 1 to 2 of 2 requests" in auditor.get("/console/?due=overdue").text
    assert 'href="/console/?status=paused">paused<' in page.text


def test_due_this_week_and_overdue_follow_the_clock(auditor: Console) -> None:
    add(auditor, due=timedelta(days=8))
    officer = auditor.officer("olga@example.org", "auditor")
    assert (figure(auditor.get(PAGE).text, "due-soon"),
            figure(auditor.get(PAGE).text, "overdue")) == (0, 0)
    auditor.clock.advance(days=2)
    assert auditor.sign_in(officer).status_code == 303  # sessions end after 30 idle minutes
    moved = auditor.get(PAGE).text
    assert (figure(moved, "due-soon"), figure(moved, "overdue")) == (1, 0)
    auditor.clock.advance(days=6)
    assert auditor.sign_in(officer).status_code == 303
    late = auditor.get(PAGE).text
    assert (figure(late, "due-soon"), figure(late, "overdue")) == (0, 1)


def test_median_and_90th_percentile_days_to_complete_by_kind(auditor: Console) -> None:
    for days in (7, 3, 10, 1, 5, 9, 2, 8, 4, 6):  # access: 1 to 10 days, in no order
        add(auditor, "access", "completed", received=timedelta(days=20),
            took=timedelta(days=days))
    for days in (2, 4):
        add(auditor, "erasure", "completed", received=timedelta(days=30),
            took=timedelta(days=days))
    # completed exactly when the window opens: counted
    add(auditor, "erasure", "completed", received_at=SINCE - timedelta(days=6),
        took=timedelta(days=6))
    # not counted: completed before the window, closed but not completed, open
    add(auditor, "access", "completed", received_at=SINCE - timedelta(days=50),
        took=timedelta(days=50) - timedelta(microseconds=1))
    add(auditor, "access", "denied", received=timedelta(days=10), took=timedelta(days=99))
    add(auditor, "access", "expired", received=timedelta(days=40), took=timedelta(days=35))
    add(auditor, "access", "processing", received=timedelta(days=10))
    page = auditor.get(PAGE).text
    assert "since 8 Sep 2025 (the last 26 weeks, this one so far)" in page
    durations = rows(page, "durations-table")
    # access 1..10: median (5 + 6) / 2; p90 at rank 0.9 * 9 = 8.1: 9 + 0.1 * (10 - 9)
    assert durations["access"] == ["10", "5.5", "9.1"]
    # erasure 2, 4, 6: median 4; p90 at rank 0.9 * 2 = 1.8: 4 + 0.8 * (6 - 4)
    assert durations["erasure"] == ["3", "4.0", "5.6"]
    assert "No completed requests yet" not in page


def test_percentiles_by_rank_and_by_percentile_cont_agree(auditor: Console) -> None:
    """Fractions of a day, an odd count and a single one: the ranks' way (SQLite's, and
    any database's) gives the figures worked out by hand, and on PostgreSQL the same
    as its own percentile_cont, which the page uses there."""
    took = [0.25, 13.5, 2.75, 40.0, 7.125, 21.0, 1.5]
    for days in took:
        add(auditor, "erasure", "completed", received=timedelta(days=60),
            took=timedelta(days=days))
    add(auditor, "access", "completed", received=timedelta(days=60), took=timedelta(hours=36))
    with auditor.rt.transaction() as session:
        board = stats.dashboard(session, auditor.rt.now())
        ranked = stats.ranked_durations(session, SINCE, {"access": 1, "erasure": 7})
    assert [(d.kind, d.completed) for d in board.durations] == [("access", 1), ("erasure", 7)]
    # sorted: 0.25 1.5 2.75 7.125 13.5 21 40; median at rank 3; p90 at rank 0.9 * 6 = 5.4
    assert (ranked[1].median, ranked[1].p90) == pytest.approx((7.125, 21 + 0.4 * (40 - 21)))
    assert (ranked[0].median, ranked[0].p90) == (1.5, 1.5)  # one: itself
    for mine, theirs in zip(board.durations, ranked, strict=True):
        assert (mine.median, mine.p90) == pytest.approx((theirs.median, theirs.p90))
    with auditor.rt.transaction() as session:
        assert stats.ranked_durations(session, SINCE, {"access": 0, "erasure": 0}) == [
            stats.Durations("access"), stats.Durations("erasure")]


def test_one_kind_completed_the_other_not(auditor: Console) -> None:
    add(auditor, "erasure", "completed", took=timedelta(days=2))
    durations = rows(auditor.get(PAGE).text, "durations-table")
    assert durations == {"access": ["0", "none completed", "none completed"],
                         "erasure": ["1", "2.0", "2.0"]}


def test_requests_per_week_by_kind_over_26_weeks(auditor: Console) -> None:
    now = auditor.rt.now()  # START and the sign-in's half a minute
    monday = datetime(2026, 3, 2, tzinfo=START.tzinfo)  # START's week
    received = {
        SINCE: ("access", "erasure"),  # the window's first moment: week 1
        SINCE - timedelta(microseconds=1): ("access",),  # before it: not counted
        SINCE + timedelta(days=7, hours=12): ("erasure",),  # week 2
        monday - timedelta(seconds=1): ("access", "access"),  # Sunday night: week 25
        monday: ("erasure",),  # this week's first moment: week 26
        now: ("access",),  # this week so far
    }
    for at, kinds in received.items():
        for kind in kinds:
            add(auditor, kind, "completed", received_at=at, took=timedelta(0))
    page = auditor.get(PAGE).text
    weeks = rows(page, "weekly-table")
    assert len(weeks) == 26
    assert list(weeks)[0] == "8 Sep 2025" and list(weeks)[-1] == "2 Mar 2026"
    assert weeks["8 Sep 2025"] == ["1", "1", "2"]
    assert weeks["15 Sep 2025"] == ["0", "1", "1"]
    assert weeks["23 Feb 2026"] == ["2", "0", "2"]
    assert weeks["2 Mar 2026"] == ["1", "1", "2"]
    assert sum(int(counts[-1]) for counts in weeks.values()) == 7
    with auditor.rt.transaction() as session:  # the one not counted is there
        assert session.scalar(select(func.count()).select_from(Request)) == 8


def test_tasks_failing_per_store_on_open_requests(auditor: Console) -> None:
    running = add(auditor, "access", "processing")
    failed = add(auditor, "erasure", "partially_failed")
    closed = add(auditor, "access", "completed", took=timedelta(days=1))
    task(auditor, failed, "crm", "failed")
    task(auditor, failed, "mail", "failed")
    task(auditor, failed, "mail", "succeeded", step="discover")
    task(auditor, running, "crm", "failed", step="discover")  # failed, others still running
    task(auditor, running, "crm", "pending", retrying=True)  # waiting to retry
    task(auditor, running, "chat", "running", retrying=True)  # trying again now
    task(auditor, running, "mail", "pending")  # not yet run: not failing
    task(auditor, closed, "chat", "failed")  # its request is closed: not counted
    page = auditor.get(PAGE).text
    assert rows(page, "stores-table") == {"crm": ["2", "1", "3"], "mail": ["1", "0", "1"],
                                         "chat": ["0", "1", "1"]}
    assert list(rows(page, "stores-table")) == ["crm", "chat", "mail"]  # most first
    chart = re.search(r'<svg [^>]*id="stores-chart".*?</svg>', page, re.S)
    assert chart and "3 (2 failed, 1 retrying)" in chart.group(0)
    assert "No tasks are failing" not in page


def test_the_charts_have_titles_labels_and_their_tables(auditor: Console) -> None:
    request_id = add(auditor, "erasure", "processing")
    task(auditor, request_id, '<img src=x onerror="alert(1)">&co', "failed")
    page = auditor.get(PAGE).text
    charts = re.findall(r"<svg [^>]*>.*?</svg>", page, re.S)
    assert len(charts) == 3
    for chart in charts:
        opened = re.match(r"<svg ([^>]*)>", chart)
        assert opened
        attrs = dict(re.findall(r'([a-z-]+)="([^"]*)"', opened.group(1)))
        assert attrs["role"] == "img"
        assert re.search(rf'<title id="{attrs["aria-labelledby"]}">[^<]+</title>', chart)
        assert f'<table class="stats" id="{attrs["aria-describedby"]}">' in page
        assert "<script" not in chart and "style=" not in chart
    assert "<text" in charts[0] and ">awaiting review<" in charts[0]
    assert ">access<" in charts[1] and ">erasure<" in charts[1]  # the lines' names
    assert "<img" not in page and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&amp;co" in page


def test_an_empty_database(auditor: Console) -> None:
    page = auditor.get(PAGE)
    assert page.status_code == 200
    for name in ("open", "due-soon", "overdue", "paused"):
        assert figure(page.text, name) == 0
    assert "No completed requests yet in these 26 weeks." in page.text
    assert "durations-table" not in page.text
    assert "No tasks are failing." in page.text and "stores-chart" not in page.text
    weeks = rows(page.text, "weekly-table")
    assert len(weeks) == 26 and all(counts == ["0", "0", "0"] for counts in weeks.values())
    assert rows(page.text, "status-table")["All"] == ["", "0"]


@pytest.mark.parametrize("role", ["auditor", "reviewer", "admin"])
def test_every_role_opens_it_from_the_navigation(console: Console, role: str) -> None:
    console.officer(f"{role}@example.org", role)
    queue = console.get("/console/").text
    assert '<li><a href="/console/dashboard">Dashboard</a></li>' in queue
    page = console.get(PAGE)
    assert page.status_code == 200 and "<h1>Dashboard</h1>" in page.text


def test_signed_out_is_sent_to_sign_in(console: Console) -> None:
    page = console.get(PAGE)
    assert page.status_code == 303
    assert page.headers["Location"] == "/console/sign-in?next=/console/dashboard"
