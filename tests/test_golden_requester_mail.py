"""Golden files: every notice a requester receives (dsar/workflow/notices.py,
texts ``mail.<notice>.*`` in dsar/texts.py), byte for byte as it leaves.

The export ready and the erasure done run a demo customer's request through
the CLI on the three demo stores (as tests/test_golden_bundle.py does), the
erasure with two stores labelled for requesters and one without (it is named
neutrally, never by its instance name) and the demo's hold with its requester
text; the officer's decisions (deny, extend, pause for identity or for
clarification, resume, cancel) are taken on an erasure awaiting review. Each
mail is queued in the outbox, delivered by the outbox's deliverer and pinned
as the ``.eml`` the mailer writes, with a frozen clock and seeded tokens, ids
and Message-IDs. SQLite only: the mail does not depend on the app database.
The rules behind them: tests/test_notices.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from syrupy.assertion import SnapshotAssertion

from dsar.demo import DemoInfo, customers_of
from dsar.runtime import Runtime
from dsar.workflow import requests as flow
from tests.support.golden import MAIL_SETTINGS, demo_stores, frozen, golden, sent  # noqa: F401

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

ADDRESS = "Ada.Quillby@Example.org"  # written to as normalised
CUSTOMER = customers_of(3)[1]  # in all three demo stores
@pytest.fixture
def mail_rt(make_app: Callable[..., Flask], tmp_path: Path, seeded: object) -> Runtime:
    app = make_app(OUTBOX_DIR=str(tmp_path / "outbox"), **MAIL_SETTINGS)
    rt: Runtime = app.extensions["dsar"]
    frozen(rt)
    return rt


def new_mail(rt: Runtime, before: list[str]) -> str:
    (mail,) = [m for m in sent(rt) if m not in before]
    return mail


def awaiting_review(rt: Runtime) -> str:
    """An erasure verified out of band, waiting for an officer; its id."""
    with rt.transaction() as session:
        request = flow.submit(session, rt, "erasure", {"email": [ADDRESS]})
        flow.mark_verified(session, rt, request, actor="officer:golden", method="out-of-band")
        return request.id


def decide(rt: Runtime, request_id: str, action: Callable[..., Any], **options: Any) -> str:
    """Take an officer's decision; the one mail it queued, as sent."""
    before = sent(rt)
    with rt.transaction() as session:
        action(session, rt, flow.get(session, request_id), actor="officer:golden", **options)
    return new_mail(rt, before)


# --- completed: the demo stores -----------------------------------------------------------


@pytest.fixture
def demo(tmp_path: Path) -> DemoInfo:
    return demo_stores(tmp_path / "instance")


def completed(make_app: Callable[..., Flask], cli: Callable[..., Result], demo: DemoInfo,
              tmp_path: Path, kind: str, labels: dict[str, str | None] | None = None) -> str:
    """A demo customer's request of ``kind``, verified out of band and run
    through the CLI (no review), its stores' labels as the demo's connector
    file gives them but for ``labels``; the mail it sent."""
    app = make_app(CONNECTORS=str(demo.connector_file), OUTBOX_DIR=str(tmp_path / "outbox"),
                   ERASURE_REVIEW=False, **MAIL_SETTINGS)
    rt: Runtime = app.extensions["dsar"]
    frozen(rt)
    for name, label in (labels or {}).items():
        rt.connectors[name].label = label
    submitted = cli("requests", "submit", "--kind", kind, "--email", CUSTOMER.email,
                    "--verified", "--json", app_=app)
    assert submitted.exit_code == 0, submitted.output
    processed = cli("requests", "process", "--workers", "1", "--timeout", "60", app_=app)
    assert processed.exit_code == 0, processed.output
    (mail,) = sent(rt)
    return mail


def test_the_export_is_ready(make_app: Callable[..., Flask], cli: Callable[..., Result],
                             demo: DemoInfo, tmp_path: Path, seeded: object,
                             golden: SnapshotAssertion) -> None:  # noqa: F811
    assert golden == completed(make_app, cli, demo, tmp_path, "access")


def test_the_data_is_erased(make_app: Callable[..., Flask], cli: Callable[..., Result],
                            demo: DemoInfo, tmp_path: Path, seeded: object,
                            golden: SnapshotAssertion) -> None:  # noqa: F811
    mail = completed(make_app, cli, demo, tmp_path, "erasure", {"chat": None})
    assert "chat" not in mail and "crm" not in mail and "tax-records" not in mail
    assert golden == mail


# --- the officer's decisions --------------------------------------------------------------


def test_the_request_is_denied(mail_rt: Runtime,
                               golden: SnapshotAssertion) -> None:  # noqa: F811
    request_id = awaiting_review(mail_rt)
    reason = ("We must keep this data to meet a legal obligation (GDPR Art. 17(3)(b)). "
              "Your customer account has an open invoice.")
    assert golden == decide(mail_rt, request_id, flow.deny, reason=reason)


def test_the_deadline_is_extended(mail_rt: Runtime,
                                  golden: SnapshotAssertion) -> None:  # noqa: F811
    request_id = awaiting_review(mail_rt)
    reason = "Your data is spread over many of our systems, and we received many requests."
    assert golden == decide(mail_rt, request_id, flow.extend, months=2, reason=reason)


@pytest.mark.parametrize("waiting_for", ["identity", "clarification"])
def test_the_clock_is_paused(mail_rt: Runtime, waiting_for: str,
                             golden: SnapshotAssertion) -> None:  # noqa: F811
    request_id = awaiting_review(mail_rt)
    assert golden == decide(mail_rt, request_id, flow.pause, waiting_for=waiting_for,
                            note="an officer's note: never in the mail")


def test_the_clock_is_resumed(mail_rt: Runtime, golden: SnapshotAssertion) -> None:  # noqa: F811
    request_id = awaiting_review(mail_rt)
    decide(mail_rt, request_id, flow.pause, waiting_for="identity")
    mail_rt.clock.advance(days=4, hours=3)
    assert golden == decide(mail_rt, request_id, flow.resume)


def test_the_request_is_cancelled(mail_rt: Runtime,
                                  golden: SnapshotAssertion) -> None:  # noqa: F811
    request_id = awaiting_review(mail_rt)
    assert golden == decide(mail_rt, request_id, flow.cancel,
                            reason="an officer's reason: never in the mail")
