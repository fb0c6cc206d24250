"""Golden files: the two mails officers subscribe to (dsar/officers/subscriptions.py),
the weekly summary and the due alert, byte for byte as they leave (the ``.eml`` the
mailer writes), on a frozen clock with seeded ids. SQLite only: the text does not
depend on the app database. The rules behind them: tests/test_officer_subscriptions.py.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from dsar import outbox
from dsar.clock import MovableClock
from dsar.officers import subscriptions
from dsar.runtime import Runtime
from dsar.workflow.states import Status
from tests.support.golden import FROZEN, golden  # noqa: F401
from tests.test_officer_subscriptions import new_request, officer, sub_rt  # noqa: F401

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def delivered(rt: Runtime) -> list[str]:
    """Deliver what is queued; the mails written to the outbox folder, by file name."""
    while outbox.deliver_due(rt):
        pass
    folder = Path(rt.settings["OUTBOX_DIR"])
    return [path.read_bytes().decode("utf-8") for path in sorted(folder.glob("*.eml"))]


@pytest.fixture
def golden_rt(sub_rt: Runtime, seeded: object) -> Runtime:  # noqa: F811
    sub_rt.clock = MovableClock(FROZEN)
    return sub_rt


def _golden_requests(rt: Runtime) -> None:
    day = timedelta(days=1)
    new_request(rt, due_in=2 * day)
    new_request(rt, due_in=-day - timedelta(hours=3), status=Status.PARTIALLY_FAILED)
    new_request(rt, due_in=5 * day, status=Status.PAUSED, kind="erasure")
    new_request(rt, due_in=13 * day, status=Status.AWAITING_REVIEW, kind="erasure")
    new_request(rt, due_in=20 * day, status=Status.PROCESSING)
    new_request(rt, due_in=-4 * day, status=Status.COMPLETED, closed_ago=3 * day)


@SQLITE
def test_the_summary_mail(golden_rt: Runtime, golden: SnapshotAssertion) -> None:  # noqa: F811
    _golden_requests(golden_rt)
    officer(golden_rt, "Ada.Officer@example.org", weekly=True)
    assert subscriptions.send_due(golden_rt) == 1
    (mail,) = delivered(golden_rt)
    assert golden == mail


@SQLITE
def test_the_due_alert_mail(golden_rt: Runtime, golden: SnapshotAssertion) -> None:  # noqa: F811
    _golden_requests(golden_rt)
    officer(golden_rt, "Ada.Officer@example.org", days=7)
    assert subscriptions.send_due(golden_rt) == 1
    (mail,) = delivered(golden_rt)
    assert golden == mail
