"""The audit trail page: filters (request, officer or actor, action, days),
newest first, pages by event number; the export of what the filters find,
streamed and itself recorded; the chain's checks (never run, waiting, intact,
an edit found by a full check, a moved checked point refused); who may see it.
"""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from sqlalchemy import select, update

from dsar import audit, audit_checks
from dsar.models import AuditCheck, AuditEvent
from tests.console.client import Console

REQUEST_A, REQUEST_B = "a" * 32, "b" * 32
_SEQ = re.compile(r"<tr>\s*<td>(\d+)</td>")


def record(console: Console, action: str, actor: str = "system",
           request_id: str | None = None, **details: object) -> None:
    rt = console.rt
    with rt.transaction() as session:
        audit.record(session, rt.crypto, action, actor=actor, request_id=request_id,
                     details=details)


def shown(page_text: str) -> list[int]:
    """The event numbers in the table, in order."""
    return [int(seq) for seq in _SEQ.findall(page_text)]


def seqs(console: Console, **where: object) -> list[int]:
    """The events matching ``where`` (columns of AuditEvent), newest first."""
    with console.rt.transaction() as session:
        query = select(AuditEvent.seq).order_by(AuditEvent.seq.desc())
        for column, value in where.items():
            query = query.where(getattr(AuditEvent, column) == value)
        return list(session.scalars(query))


@pytest.fixture
def auditor(console: Console) -> Console:
    console.officer_of = console.officer("audrey@example.org", "auditor")  # type: ignore[attr-defined]
    return console


def test_the_trail_newest_first_with_who_did_what(auditor: Console) -> None:
    record(auditor, "request.received", "requester", REQUEST_A)
    officer = auditor.officer_of  # type: ignore[attr-defined]
    record(auditor, "request.approved", f"officer:{officer.id}", REQUEST_A, reason="<b>ok</b>")
    page = auditor.get("/console/audit")
    assert page.status_code == 200
    assert shown(page.text) == seqs(auditor)
    assert "audrey@example.org <span class=\"hint\">(officer:" in page.text
    assert f'href="/console/requests/{REQUEST_A}"' in page.text
    assert '{"reason": "\\u003cb\\u003eok\\u003c/b\\u003e"}' in page.text  # escaped
    assert "<b>ok" not in page.text


def test_each_filter_finds_its_events_only(auditor: Console) -> None:
    officer = auditor.officer_of  # type: ignore[attr-defined]
    record(auditor, "request.received", "requester", REQUEST_A)
    record(auditor, "request.received", "requester", REQUEST_B)
    record(auditor, "request.approved", f"officer:{officer.id}", REQUEST_B)
    record(auditor, "task.succeeded", "connector:crm", REQUEST_B)
    cases = {
        f"request={REQUEST_B}": seqs(auditor, request_id=REQUEST_B),
        f"request={REQUEST_B.upper()}": seqs(auditor, request_id=REQUEST_B),
        f"officer={officer.id}": seqs(auditor, actor=f"officer:{officer.id}"),
        "actor=connector:crm": seqs(auditor, actor="connector:crm"),
        "action=request.received": seqs(auditor, action="request.received"),
        f"action=request.received&request={REQUEST_A}": seqs(
            auditor, action="request.received", request_id=REQUEST_A),
    }
    for query, expected in cases.items():
        page = auditor.get(f"/console/audit?{query}")
        assert page.status_code == 200, query
        assert expected and shown(page.text) == expected, query
        assert "Clear the filters" in page.text


def test_days_are_utc_days_with_the_last_day_included(auditor: Console) -> None:
    record(auditor, "test.before")                       # 2026-03-02
    auditor.clock.advance(days=1)
    record(auditor, "test.first_day")                    # 2026-03-03
    auditor.clock.advance(days=1, hours=14, minutes=59)
    record(auditor, "test.last_day")                     # 2026-03-04 23:59
    auditor.clock.advance(minutes=2)
    record(auditor, "test.after")                        # 2026-03-05 00:01
    auditor.sign_in(auditor.officer_of)  # type: ignore[attr-defined]
    page = auditor.get("/console/audit?since=2026-03-03&until=2026-03-04")
    assert page.status_code == 200
    found = shown(page.text)
    assert found == [seqs(auditor, action="test.last_day")[0],
                     seqs(auditor, action="test.first_day")[0]]


def test_pages_go_back_by_event_number(auditor: Console) -> None:
    for n in range(60):
        record(auditor, "test.event", n=n)
    newest = seqs(auditor)
    first = auditor.get("/console/audit")
    assert shown(first.text) == newest[:50]
    older = re.search(r'href="([^"]+)" rel="next">Older events', first.text)
    assert older is not None
    second = auditor.get(older.group(1).replace("&amp;", "&"))
    assert shown(second.text) == newest[50:100]
    assert "Newest events" in second.text
    filtered = auditor.get(f"/console/audit?action=test.event&before={newest[10]}")
    assert shown(filtered.text) == [seq for seq in newest[11:61]
                                    if seq in seqs(auditor, action="test.event")][:50]


@pytest.mark.parametrize(("query", "field", "message"), [
    ("request=not-an-id", "request", "A request id is 32 characters"),
    ("officer=nobody", "officer", "Choose an officer from the list"),
    ("actor=DROP%20TABLE", "actor", "An actor is a word"),
    ("action=request..x", "action", "An action is words joined by dots"),
    ("since=2026-02-30", "since", "Enter the first day as a date"),
    ("until=yesterday", "until", "Enter the last day as a date"),
    ("since=2026-03-05&until=2026-03-01", "until", "The last day is before the first day"),
    ("before=-3", "before", "Choose a page from the links"),
    ("before=99999999999999999999", "before", "Choose a page from the links"),
])
def test_a_value_that_is_not_one_of_ours_is_a_400_naming_the_field(
        auditor: Console, query: str, field: str, message: str) -> None:
    page = auditor.get(f"/console/audit?{query}")
    assert page.status_code == 400
    assert "There is a problem" in page.text and f'href="#{field}"' in page.text
    assert message in page.text


def test_an_officer_and_another_actor_at_once_is_refused(auditor: Console) -> None:
    officer = auditor.officer_of  # type: ignore[attr-defined]
    page = auditor.get(f"/console/audit?officer={officer.id}&actor=system")
    assert page.status_code == 400 and "Choose an officer or type an actor, not both" in page.text


# --- the export -------------------------------------------------------------------------

def test_the_export_streams_what_the_filters_find_and_is_itself_recorded(
        auditor: Console) -> None:
    officer = auditor.officer_of  # type: ignore[attr-defined]
    record(auditor, "request.received", "requester", REQUEST_A)
    record(auditor, "request.received", "requester", REQUEST_B)
    record(auditor, "task.succeeded", "connector:crm", REQUEST_B, records=3)
    expected = sorted(seqs(auditor, request_id=REQUEST_B))  # not the export's own event
    auditor.get("/console/audit")
    out = auditor.post("/console/audit/export", format="csv", request=REQUEST_B)
    assert out.status_code == 200
    assert out.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert out.headers["Content-Disposition"].startswith('attachment; filename="dsar-audit-')
    assert out.headers["Cache-Control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(out.text)))
    assert [int(row["seq"]) for row in rows] == expected
    assert json.loads(rows[-1]["details"]) == {"records": 3}
    [exported] = seqs(auditor, action="audit.exported")
    with auditor.rt.transaction() as session:
        event = session.get_one(AuditEvent, exported)
        assert (event.actor, event.request_id) == (f"officer:{officer.id}", REQUEST_B)
        assert json.loads(event.details) == {"format": "csv", "through": exported - 1,
                                             "filters": {"request": REQUEST_B}}
    lines = auditor.post("/console/audit/export", format="jsonl",
                         action="task.succeeded").text.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == seqs(auditor, action="task.succeeded")
    with auditor.rt.transaction() as session:
        assert lines == [line.rstrip("\n") for line in audit.lines(
            session, "jsonl", audit.Trail(action="task.succeeded"))]


def test_an_export_with_a_wrong_value_records_nothing(auditor: Console) -> None:
    auditor.get("/console/audit")
    for data in ({"format": "xlsx"}, {"format": "csv", "request": "x"}):
        out = auditor.post("/console/audit/export", **data)
        assert out.status_code == 400 and "There is a problem" in out.text
    assert seqs(auditor, action="audit.exported") == []


def test_the_export_needs_the_forms_csrf_token(auditor: Console) -> None:
    out = auditor.client.post("/console/audit/export", data={"format": "csv"})
    assert out.status_code == 400
    assert seqs(auditor, action="audit.exported") == []


# --- the chain's checks -----------------------------------------------------------------

def test_the_checks_never_run_then_asked_then_intact(auditor: Console) -> None:
    record(auditor, "test.event")
    assert "The chain has not been checked yet." in auditor.get("/console/audit").text
    asked = auditor.post("/console/audit/check", kind="incremental")
    assert asked.status_code == 303 and asked.headers["Location"].endswith("/console/audit#checks")
    page = auditor.get("/console/audit")
    assert "check asked for 2026-03-02" in page.text
    assert "is waiting for the housekeeper" in page.text
    assert audit_checks.run_asked(auditor.rt) == 1
    page = auditor.get("/console/audit")
    assert "Intact</strong> Events 1 to" in page.text and "waiting" not in page.text
    assert "Last full check: 2026-03-02" in page.text  # the first check walks everything


def test_an_edit_the_full_check_finds_is_shown_at_its_event(auditor: Console) -> None:
    for n in range(3):
        record(auditor, "test.event", n=n)
    auditor.post("/console/audit/check", kind="incremental")
    audit_checks.run_asked(auditor.rt)
    [second] = [s for s in seqs(auditor, action="test.event")][1:2]
    with auditor.rt.engine.begin() as connection:
        connection.execute(update(AuditEvent).where(AuditEvent.seq == second)
                           .values(details='{"n":7}'))
    auditor.post("/console/audit/check", kind="incremental")
    audit_checks.run_asked(auditor.rt)
    assert "Intact</strong>" in auditor.get("/console/audit").text  # behind the point
    auditor.post("/console/audit/check", kind="full")
    audit_checks.run_asked(auditor.rt)
    page = auditor.get("/console/audit")
    assert f'Broken</strong> at event <a href="/console/audit?before={second + 1}">{second}</a>: ' \
        "content does not match its hash (edited)." in page.text


def test_a_moved_checked_point_is_shown_and_refused(auditor: Console) -> None:
    record(auditor, "test.event")
    auditor.post("/console/audit/check", kind="full")
    audit_checks.run_asked(auditor.rt)
    with auditor.rt.transaction() as session:
        session.execute(update(AuditCheck).values(to_seq=AuditCheck.to_seq + 1))
    page = auditor.get("/console/audit")
    assert "The record of the last check does not match its seal." in page.text
    auditor.post("/console/audit/check", kind="incremental")
    audit_checks.run_asked(auditor.rt)
    page = auditor.get("/console/audit")
    assert "does not match its seal: it was moved or forged" in page.text


def test_asking_for_a_kind_that_is_not_ours_is_a_400(auditor: Console) -> None:
    auditor.get("/console/audit")
    refused = auditor.post("/console/audit/check", kind="partial")
    assert refused.status_code == 400 and "Choose what to check" in refused.text
    with auditor.rt.transaction() as session:
        assert session.scalars(select(AuditCheck)).first() is None


# --- who may see it ---------------------------------------------------------------------

@pytest.mark.parametrize("role", ["auditor", "reviewer", "admin"])
def test_every_role_reads_the_trail_checks_and_exports(console: Console, role: str) -> None:
    console.officer(f"{role}@example.org", role)
    assert console.get("/console/audit").status_code == 200
    assert console.post("/console/audit/check", kind="full").status_code == 303
    assert console.post("/console/audit/export", format="jsonl").status_code == 200


def test_signed_out_the_trail_sends_to_sign_in(console: Console) -> None:
    page = console.client.get("/console/audit?action=request.received")
    assert page.status_code == 303
    assert "/console/sign-in?next=" in page.headers["Location"]
    console.get("/console/sign-in")
    assert console.post("/console/audit/export", format="csv").status_code == 303
    assert seqs(console, action="audit.exported") == []
