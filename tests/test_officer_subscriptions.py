"""Officers' mail subscriptions (dsar/officers/subscriptions.py): the weekly
summary and the due alerts the housekeeper queues through the outbox.

The summary goes to active officers who asked for it, once per 7 days, with
the queue's figures; an alert lists the open requests within the officer's N
days of their due date (or past it), once per request and due date, again
after an extension moves it, never a closed one. Neither names a requester.
The two mails are pinned as golden files in tests/test_golden_officer_mail.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from dsar import outbox
from dsar.clock import MovableClock
from dsar.console import stats
from dsar.console.queue import CLOSED, OPEN
from dsar.executor import housekeeping_chores
from dsar.models import Officer, OfficerDueAlert, OfficerStatus, OutboxMail, Request
from dsar.officers import accounts, subscriptions
from dsar.runtime import Runtime
from dsar.workflow import requests as flow
from dsar.workflow.states import Status
from tests.support.golden import FROZEN, golden  # noqa: F401
from tests.support.queued import Mail, queued

#: a Monday morning
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BASE = "https://privacy.example.com"
#: the requesters' identifiers: never in an officer's mail
REQUESTER = "zoe.requester@example.net"
PHONE = "+44 7700 900123"
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def sub_rt(make_app: Callable[..., Flask], tmp_path: Path) -> Runtime:
    app = make_app(BASE_URL=BASE, OUTBOX_DIR=str(tmp_path / "outbox"),
                   MAIL_FROM="dsar <privacy@example.com>")
    rt: Runtime = app.extensions["dsar"]
    rt.clock = MovableClock(START)
    return rt


def clock(rt: Runtime) -> MovableClock:
    assert isinstance(rt.clock, MovableClock)
    return rt.clock


def officer(rt: Runtime, email: str, *, weekly: bool = False, days: int | None = None,
            status: str = OfficerStatus.ACTIVE, role: str = "reviewer") -> str:
    with rt.transaction() as session:
        officer_id = accounts.create(session, rt, email, role, actor="operator:test").officer_id
        row = session.get(Officer, officer_id)
        assert row is not None
        row.status, row.weekly_summary, row.due_alert_days = status, weekly, days
    return officer_id


def subscribe(rt: Runtime, officer_id: str, *, weekly: bool,
              days: int | None) -> None:
    with rt.transaction() as session:
        row = session.get(Officer, officer_id)
        assert row is not None
        subscriptions.change(session, rt, row, weekly_summary=weekly, due_alert_days=days)


def new_request(rt: Runtime, *, due_in: timedelta | None = None, status: str = "received",
                kind: str = "access", closed_ago: timedelta | None = None) -> str:
    """A request (its subject: :data:`REQUESTER`), put in ``status`` due ``due_in`` from now."""
    with rt.transaction() as session:
        request = flow.submit(session, rt, kind, {"email": [REQUESTER], "phone": [PHONE]})
        session.flush()
        if due_in is not None:
            request.due_at = rt.now() + due_in
        request.status = status
        if closed_ago is not None:
            request.closed_at = rt.now() - closed_ago
        return request.id


def mails(rt: Runtime) -> list[Mail]:
    """Every mail queued, oldest first, decrypted."""
    return queued(rt)


def sent_since(rt: Runtime, before: int) -> list[Mail]:
    return mails(rt)[before:]


def listed(mail: Mail) -> list[str]:
    """The request ids an alert lists, in its order."""
    return [line for line in mail.body.splitlines() if len(line) == 32 and line.isalnum()]


def alerted(rt: Runtime, officer_id: str) -> list[tuple[str, datetime]]:
    with rt.transaction() as session:
        return [(r, d) for r, d in session.execute(
            select(OfficerDueAlert.request_id, OfficerDueAlert.due_at)
            .where(OfficerDueAlert.officer_id == officer_id)
            .order_by(OfficerDueAlert.due_at, OfficerDueAlert.request_id))]


def assert_impersonal(mail: Mail) -> None:
    for secret in (REQUESTER, "zoe.requester", "example.net", PHONE, "+447700900123",
                   "7700 900123"):
        assert secret not in mail.subject and secret not in mail.body, secret


# --- the weekly summary --------------------------------------------------------------------


def test_the_summary_goes_every_7_days_to_active_subscribers_only(sub_rt: Runtime) -> None:
    ann = officer(sub_rt, "ann@example.org", weekly=True)
    officer(sub_rt, "bob@example.org")  # active, not subscribed
    officer(sub_rt, "cat@example.org", weekly=True, status=OfficerStatus.DISABLED)
    officer(sub_rt, "dan@example.org", weekly=True, status=OfficerStatus.INVITED)
    officer(sub_rt, "eve@example.org", days=3)  # alerts only, nothing due
    assert subscriptions.send_due(sub_rt) == 1
    (mail,) = mails(sub_rt)
    assert (mail.kind, mail.to) == ("officer.summary", "ann@example.org")
    with sub_rt.transaction() as session:
        row = session.get(Officer, ann)
        assert row is not None and row.weekly_summary_sent_at == START
    assert subscriptions.send_due(sub_rt) == 0
    clock(sub_rt).advance(days=7, seconds=-1)
    assert subscriptions.send_due(sub_rt) == 0
    clock(sub_rt).advance(seconds=1)
    assert subscriptions.send_due(sub_rt) == 1
    assert [m.to for m in mails(sub_rt)] == ["ann@example.org"] * 2
    subscribe(sub_rt, ann, weekly=False, days=None)
    clock(sub_rt).advance(days=30)
    assert subscriptions.send_due(sub_rt) == 0
    assert len(mails(sub_rt)) == 2


def test_a_late_housekeeper_sends_one_summary_not_one_per_week_missed(sub_rt: Runtime) -> None:
    officer(sub_rt, "ann@example.org", weekly=True)
    assert subscriptions.send_due(sub_rt) == 1
    clock(sub_rt).advance(days=30)
    assert subscriptions.send_due(sub_rt) == 1
    assert subscriptions.send_due(sub_rt) == 0


def test_the_summary_counts_as_the_dashboard_does(sub_rt: Runtime) -> None:
    day = timedelta(days=1)
    new_request(sub_rt, due_in=20 * day)  # open, not due soon
    new_request(sub_rt, due_in=3 * day, status=Status.PROCESSING)  # due soon
    new_request(sub_rt, due_in=7 * day - timedelta(minutes=1),
                status=Status.PARTIALLY_FAILED)  # due soon, just
    new_request(sub_rt, due_in=-2 * day, status=Status.AWAITING_REVIEW)  # overdue
    new_request(sub_rt, due_in=10 * day, status=Status.PAUSED, kind="erasure")
    new_request(sub_rt, due_in=7 * day, status=Status.APPROVED, kind="erasure")  # not soon
    new_request(sub_rt, due_in=-5 * day, status=Status.COMPLETED, closed_ago=2 * day)
    new_request(sub_rt, due_in=-9 * day, status=Status.COMPLETED, closed_ago=7 * day)
    new_request(sub_rt, due_in=-9 * day, status=Status.COMPLETED,
                closed_ago=7 * day + timedelta(seconds=1))  # before the last 7 days
    new_request(sub_rt, due_in=day, status=Status.CANCELLED, closed_ago=day)
    new_request(sub_rt, due_in=-day, status=Status.DENIED, closed_ago=day, kind="erasure")
    officer(sub_rt, "ann@example.org", weekly=True)
    assert subscriptions.send_due(sub_rt) == 1
    (mail,) = mails(sub_rt)
    assert mail.subject == "dsar weekly summary: 6 open, 1 overdue"
    for line in ("Open requests: 6", "  received: 1", "  verifying: 0", "  verified: 0",
                 "  awaiting review: 1", "  approved: 1", "  processing: 1",
                 "  partially failed: 1", "  paused: 1",
                 "Due within the next 7 days: 2", "Overdue: 1",
                 "Paused (the clock stopped): 1", "Completed in the last 7 days: 2",
                 f"The dashboard: {BASE}/console/dashboard",
                 f"The queue, nearest due date first: {BASE}/console/",
                 f"untick it on your account page: {BASE}/console/account"):
        assert line in mail.body.splitlines(), line
    by_status = [line.strip().split(":")[0] for line in mail.body.splitlines()
                 if line.startswith("  ")]
    assert by_status == [s.value.replace("_", " ") for s in OPEN]
    with sub_rt.transaction() as session:
        assert stats.due_counts(session, sub_rt.now()) == (2, 1)
    assert_impersonal(mail)


# --- due alerts -----------------------------------------------------------------------------


def test_an_alert_lists_open_requests_within_n_days_once_per_due_date(sub_rt: Runtime) -> None:
    day = timedelta(days=1)
    ann = officer(sub_rt, "ann@example.org", days=3)
    soon = new_request(sub_rt, due_in=2 * day)
    edge = new_request(sub_rt, due_in=3 * day - timedelta(seconds=1), status=Status.PROCESSING)
    later = new_request(sub_rt, due_in=3 * day + timedelta(hours=12))
    late = new_request(sub_rt, due_in=-day, status=Status.PAUSED)
    new_request(sub_rt, due_in=40 * day)
    assert subscriptions.send_due(sub_rt) == 1
    (mail,) = mails(sub_rt)
    assert (mail.kind, mail.to) == ("officer.due_alert", "ann@example.org")
    assert mail.subject == "dsar due alert: 3 requests due within 3 days or overdue"
    assert listed(mail) == [late, soon, edge]  # nearest due date first
    assert f"{BASE}/console/requests/{soon}" in mail.body
    assert "  access, paused: due 2026-03-01 09:00 UTC (overdue by 1 day)" in mail.body
    assert "  access, received: due 2026-03-04 09:00 UTC (2 days left)" in mail.body
    assert "  access, processing: due 2026-03-05 08:59 UTC (2 days left)" in mail.body
    assert [r for r, _ in alerted(sub_rt, ann)] == [late, soon, edge]
    assert_impersonal(mail)
    assert subscriptions.send_due(sub_rt) == 0  # told once
    clock(sub_rt).advance(hours=12, seconds=1)  # ``later`` comes within 3 days
    assert subscriptions.send_due(sub_rt) == 1
    again = mails(sub_rt)[-1]
    assert listed(again) == [later]
    assert again.subject == "dsar due alert: 1 request due within 3 days or overdue"
    assert "This request is due within 3 days or overdue:" in again.body.splitlines()
    assert subscriptions.send_due(sub_rt) == 0


def test_an_extension_moves_the_due_date_and_the_officer_hears_again(sub_rt: Runtime) -> None:
    ann = officer(sub_rt, "ann@example.org", days=7)
    request_id = new_request(sub_rt)  # due a month after START, as received
    with sub_rt.transaction() as session:
        first_due = flow.get(session, request_id).due_at
    assert subscriptions.send_due(sub_rt) == 0
    clock(sub_rt).advance(first_due - START - timedelta(days=6))
    assert subscriptions.send_due(sub_rt) == 1
    assert listed(mails(sub_rt)[-1]) == [request_id]
    with sub_rt.transaction() as session:
        flow.extend(session, sub_rt, flow.get(session, request_id), actor="officer:x",
                    months=1, reason="Many records")
        second_due = flow.get(session, request_id).due_at
    assert second_due > first_due + timedelta(days=27)
    assert subscriptions.send_due(sub_rt) == 0  # the new due date is weeks away
    clock(sub_rt).advance(second_due - sub_rt.now() - timedelta(days=6))
    assert subscriptions.send_due(sub_rt) == 1
    mail = mails(sub_rt)[-1]
    assert listed(mail) == [request_id] and "(6 days left)" in mail.body
    assert alerted(sub_rt, ann) == [(request_id, first_due), (request_id, second_due)]
    assert subscriptions.send_due(sub_rt) == 0


def test_a_resumed_pause_moves_the_due_date_and_the_officer_hears_again(
        sub_rt: Runtime) -> None:
    officer(sub_rt, "ann@example.org", days=1)
    request_id = new_request(sub_rt, due_in=timedelta(hours=20))
    assert subscriptions.send_due(sub_rt) == 1
    with sub_rt.transaction() as session:
        flow.pause(session, sub_rt, flow.get(session, request_id), actor="officer:x",
                   waiting_for="identity")
    clock(sub_rt).advance(days=3)
    assert subscriptions.send_due(sub_rt) == 0  # paused: the same due date, told already
    with sub_rt.transaction() as session:
        flow.resume(session, sub_rt, flow.get(session, request_id), actor="officer:x")
    assert subscriptions.send_due(sub_rt) == 1  # three days later: 20 hours left again
    assert "(less than a day left)" in mails(sub_rt)[-1].body


def test_closed_requests_are_never_alerted_every_open_one_is(sub_rt: Runtime) -> None:
    officer(sub_rt, "ann@example.org", days=14)
    open_ids = [new_request(sub_rt, due_in=timedelta(days=1), status=s) for s in OPEN]
    for status in sorted(CLOSED):
        new_request(sub_rt, due_in=timedelta(days=1), status=status,
                    closed_ago=timedelta(hours=1))
        new_request(sub_rt, due_in=timedelta(days=-3), status=status,
                    closed_ago=timedelta(days=4))
    assert subscriptions.send_due(sub_rt) == 1
    (mail,) = mails(sub_rt)
    assert sorted(listed(mail)) == sorted(open_ids)


def test_each_officer_is_alerted_on_their_own_window_if_active(sub_rt: Runtime) -> None:
    ann = officer(sub_rt, "ann@example.org", days=1)
    bob = officer(sub_rt, "bob@example.org", days=7, role="auditor")
    officer(sub_rt, "cat@example.org", days=7, status=OfficerStatus.DISABLED)
    officer(sub_rt, "dan@example.org", days=7, status=OfficerStatus.INVITED)
    officer(sub_rt, "eve@example.org")
    near = new_request(sub_rt, due_in=timedelta(hours=5))
    week = new_request(sub_rt, due_in=timedelta(days=5))
    assert subscriptions.send_due(sub_rt) == 2
    got = {m.to: listed(m) for m in mails(sub_rt)}
    assert got == {"ann@example.org": [near], "bob@example.org": [near, week]}
    assert len(alerted(sub_rt, ann)) == 1 and len(alerted(sub_rt, bob)) == 2
    # ann widens her window: told of ``week`` now, of ``near`` not again
    subscribe(sub_rt, ann, weekly=False, days=7)
    assert subscriptions.send_due(sub_rt) == 1
    assert listed(mails(sub_rt)[-1]) == [week]


def test_a_long_list_is_cut_and_the_rest_counted(sub_rt: Runtime,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subscriptions, "MAX_LISTED", 2)
    ann = officer(sub_rt, "ann@example.org", days=3)
    ids = [new_request(sub_rt, due_in=timedelta(hours=h)) for h in (1, 2, 3)]
    assert subscriptions.send_due(sub_rt) == 1
    (mail,) = mails(sub_rt)
    assert listed(mail) == ids[:2]
    assert "And 1 more: the queue lists them all." in mail.body
    assert mail.subject == "dsar due alert: 3 requests due within 3 days or overdue"
    assert [r for r, _ in alerted(sub_rt, ann)] == ids
    assert subscriptions.send_due(sub_rt) == 0


def test_summary_and_alert_together_in_one_transaction(sub_rt: Runtime) -> None:
    officer(sub_rt, "ann@example.org", weekly=True, days=3)
    new_request(sub_rt, due_in=timedelta(days=1))
    assert subscriptions.send_due(sub_rt) == 2
    assert [m.kind for m in mails(sub_rt)] == ["officer.summary", "officer.due_alert"]


def test_a_failed_send_records_nothing_and_stops_no_other_officer(
        sub_rt: Runtime, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    ann = officer(sub_rt, "ann@example.org", weekly=True, days=3)
    bob = officer(sub_rt, "bob@example.org", weekly=True)
    new_request(sub_rt, due_in=timedelta(days=1))
    enqueue = outbox.enqueue

    def broken_for_ann(session: Session, rt: Runtime, to: str, *args: Any,
                       **kwargs: Any) -> OutboxMail:
        if to.startswith("ann"):
            raise RuntimeError("the outbox is broken for ann@example.org")
        return enqueue(session, rt, to, *args, **kwargs)

    monkeypatch.setattr(outbox, "enqueue", broken_for_ann)
    assert subscriptions.send_due(sub_rt) == 1
    assert [m.to for m in mails(sub_rt)] == ["bob@example.org"]
    assert alerted(sub_rt, ann) == []
    with sub_rt.transaction() as session:
        row = session.get(Officer, ann)
        assert row is not None and row.weekly_summary_sent_at is None
    assert f"officer {ann}: subscription mails not queued (RuntimeError)" in caplog.text
    assert f"officer {bob}: 1 subscription mails queued" in caplog.text
    assert "ann@" not in caplog.text
    monkeypatch.undo()
    assert subscriptions.send_due(sub_rt) == 2


def test_change_takes_only_the_choices_and_records_a_change_once(sub_rt: Runtime) -> None:
    ann = officer(sub_rt, "ann@example.org")
    with sub_rt.transaction() as session:
        row = session.get(Officer, ann)
        assert row is not None
        with pytest.raises(ValueError):
            subscriptions.change(session, sub_rt, row, weekly_summary=True, due_alert_days=5)
        assert subscriptions.change(session, sub_rt, row, weekly_summary=True,
                                    due_alert_days=14)
        assert not subscriptions.change(session, sub_rt, row, weekly_summary=True,
                                        due_alert_days=14)


def test_housekeeping_chores_send_them(sub_rt: Runtime) -> None:
    officer(sub_rt, "ann@example.org", weekly=True, days=3)
    new_request(sub_rt, due_in=timedelta(days=1), status=Status.PROCESSING)
    housekeeping_chores(sub_rt)
    assert sorted(m.kind for m in mails(sub_rt)) == ["officer.due_alert", "officer.summary"]
    housekeeping_chores(sub_rt)
    assert len(mails(sub_rt)) == 2


def test_deleting_a_request_or_an_officer_deletes_their_alerts(sub_rt: Runtime) -> None:
    ann = officer(sub_rt, "ann@example.org", days=3)
    bob = officer(sub_rt, "bob@example.org", days=3)
    gone = new_request(sub_rt, due_in=timedelta(days=1))
    kept = new_request(sub_rt, due_in=timedelta(days=2))
    assert subscriptions.send_due(sub_rt) == 2
    with sub_rt.transaction() as session:
        session.delete(flow.get(session, gone))
    assert [r for r, _ in alerted(sub_rt, ann)] == [kept]
    with sub_rt.transaction() as session:
        session.delete(session.get(Officer, bob))
    assert alerted(sub_rt, bob) == []
    with sub_rt.transaction() as session:
        assert session.scalar(select(Request.id).where(Request.id == kept)) == kept
