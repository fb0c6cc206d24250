"""The trail's parts of dsar.audit: what each filter of ``Trail`` keeps, the
pages newest first by event number, and ``lines`` streaming a filtered part
(the console's page and export: tests/console/test_trail.py).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from dsar import audit
from dsar.clock import MovableClock
from dsar.runtime import Runtime

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
#: (minutes after T0, action, actor, request id) of the chain's events 1 to 6
EVENTS = [(0, "request.received", "requester", "a" * 32),
          (10, "request.received", "requester", "b" * 32),
          (20, "request.approved", "officer:o1", "a" * 32),
          (30, "task.succeeded", "connector:crm", "a" * 32),
          (40, "request.approved", "officer:o2", "b" * 32),
          (50, "audit.checked", "system", None)]


@pytest.fixture
def chain(rt: Runtime) -> Runtime:
    rt.clock = clock = MovableClock(T0)
    for minutes, action, actor, request_id in EVENTS:
        clock.advance(T0 + timedelta(minutes=minutes) - clock.now())
        with rt.transaction() as session:
            audit.record(session, rt.crypto, action, actor=actor, request_id=request_id,
                         details={"at": minutes})
    return rt


def seqs(rt: Runtime, trail: audit.Trail, size: int = 50,
         before: int | None = None) -> tuple[list[int], int | None]:
    with rt.transaction() as session:
        rows, older = audit.page(session, trail, size=size, before=before)
    return [row["seq"] for row in rows], older


@pytest.mark.parametrize(("trail", "expected"), [
    (audit.Trail(), [6, 5, 4, 3, 2, 1]),
    (audit.Trail(request_id="a" * 32), [4, 3, 1]),
    (audit.Trail(actor="officer:o2"), [5]),
    (audit.Trail(action="request.approved"), [5, 3]),
    (audit.Trail(since=T0 + timedelta(minutes=20)), [6, 5, 4, 3]),
    (audit.Trail(until=T0 + timedelta(minutes=20)), [2, 1]),  # until is left out
    (audit.Trail(through=4), [4, 3, 2, 1]),
    (audit.Trail(request_id="a" * 32, action="request.approved", actor="officer:o1",
                 since=T0 + timedelta(minutes=20), until=T0 + timedelta(minutes=21),
                 through=3), [3]),
    (audit.Trail(request_id="c" * 32), []),
])
def test_each_filter_keeps_its_events_newest_first(chain: Runtime, trail: audit.Trail,
                                                   expected: list[int]) -> None:
    assert seqs(chain, trail) == (expected, None)


def test_pages_go_back_by_event_number_and_say_where_the_next_starts(chain: Runtime) -> None:
    assert seqs(chain, audit.Trail(), size=2) == ([6, 5], 5)
    assert seqs(chain, audit.Trail(), size=2, before=5) == ([4, 3], 3)
    assert seqs(chain, audit.Trail(), size=2, before=3) == ([2, 1], None)
    assert seqs(chain, audit.Trail(), size=3, before=4) == ([3, 2, 1], None)
    assert seqs(chain, audit.Trail(request_id="a" * 32), size=1, before=4) == ([3], 3)


def test_a_page_holds_what_the_export_holds(chain: Runtime) -> None:
    with chain.transaction() as session:
        [row], _ = audit.page(session, audit.Trail(actor="officer:o2"), size=10)
        [line] = list(audit.lines(session, "jsonl", audit.Trail(actor="officer:o2")))
    assert json.loads(line) == row
    assert row["details"] == {"at": 40} and row["occurred_at"] == "2026-03-02T09:40:00.000000Z"


def test_lines_stream_a_filtered_part_a_line_at_a_time(chain: Runtime) -> None:
    trail = audit.Trail(request_id="b" * 32)
    with chain.transaction() as session:
        jsonl = list(audit.lines(session, "jsonl", trail))
        table = list(audit.lines(session, "csv", trail))
        empty = list(audit.lines(session, "csv", audit.Trail(request_id="c" * 32)))
    assert [json.loads(line)["seq"] for line in jsonl] == [2, 5]
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in jsonl)
    assert len(table) == 3 and table[0] == ",".join(audit.EXPORT_FIELDS) + "\r\n"
    assert [row["seq"] for row in csv.DictReader(io.StringIO("".join(table)))] == ["2", "5"]
    assert empty == [",".join(audit.EXPORT_FIELDS) + "\r\n"]
    with chain.transaction() as session, pytest.raises(ValueError, match="unknown format 'xml'"):
        next(audit.lines(session, "xml"))
    with chain.transaction() as session:  # the whole chain when no part is asked for
        assert [json.loads(line)["seq"] for line in audit.lines(session, "jsonl")] == \
            [1, 2, 3, 4, 5, 6]


def test_export_counts_events_not_lines(chain: Runtime) -> None:
    out = io.StringIO()
    with chain.transaction() as session:
        assert audit.export(session, out, "csv", audit.Trail(action="request.approved")) == 2
        assert audit.export(session, io.StringIO(), "jsonl", audit.Trail(through=2)) == 2
    assert out.getvalue().count("\r\n") == 3
