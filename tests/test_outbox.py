"""Mail out of the transaction: the outbox table and its deliverers, against a
real SMTP server (aiosmtpd) on SQLite and PostgreSQL.

An SMTP outage delays a code but never fails or slows a submission; the mail
goes once the server is back, exactly once even with deliverers racing; no
database lock is held while a mail is sent; recipient, subject and body are
encrypted at rest and cleared once sent; nothing personal is logged.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, text, update

from dsar import outbox
from dsar.database import utcnow
from dsar.executor import InProcessExecutor
from dsar.models import OutboxMail, Request
from dsar.runtime import Runtime
from tests.api.helpers import BASE, auth, submit
from tests.support.smtp import SmtpServer, smtp_server  # noqa: F401 - a fixture
from tests.support.workers import wait_for

ALICE, BOB = "alice.outbox@example.org", "bob.outbox@example.org"
UNLIMITED = {"RATE_LIMIT_SUBMIT": "1000 per minute", "RATE_LIMIT_VERIFY": "1000 per minute",
             "RATE_LIMIT_RESEND": "1000 per minute"}


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Values that must never reach a log line: tests append codes and tokens."""
    caplog.set_level(logging.DEBUG)
    secrets = [ALICE, BOB, "alice.outbox", "bob.outbox"]
    yield secrets
    lines = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
                      if not r.name.startswith("mail.log"))  # the test server's own log
    for secret in secrets:
        assert secret not in lines, f"{secret!r} reached a log line"


@pytest.fixture
def smtp_app(make_app: Callable[..., Flask], smtp_server: SmtpServer,  # noqa: F811
             tmp_path: Path) -> Callable[..., Flask]:
    def factory(**config: Any) -> Flask:
        return make_app(SMTP_URL=smtp_server.url, OUTBOX_DIR=str(tmp_path / "outbox"),
                        TESTING=True, **UNLIMITED, **config)

    return factory


def rt_of(app: Flask) -> Runtime:
    rt: Runtime = app.extensions["dsar"]
    return rt


def mails(rt: Runtime) -> list[OutboxMail]:
    with rt.transaction() as session:
        return list(session.scalars(select(OutboxMail).order_by(OutboxMail.id)))


def code_of(message: Any) -> str:
    """The code on a line of its own in the body (never in the subject: it
    shows on lock screens)."""
    assert not re.search(r"\d", str(message["Subject"])), "a code in the subject"
    found = re.search(r"^\s*(\d{6})\s*$", message.get_body().get_content(), re.MULTILINE)
    assert found, "a code mail without a code"
    return found.group(1)


@dataclass
class Background:
    """A call in a thread of its own: its result or its error, once done."""

    call: Callable[[], Any]
    result: Any = None
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.call()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def done_within(self, seconds: float) -> bool:
        self.thread.join(seconds)
        if self.error is not None:
            raise self.error
        return not self.thread.is_alive()


def test_an_smtp_outage_delays_the_code_but_not_the_submission(
        smtp_app: Callable[..., Flask], smtp_server: SmtpServer,  # noqa: F811
        logged: list[str]) -> None:
    app = smtp_app()
    rt, client = rt_of(app), app.test_client()
    smtp_server.stop()
    started = time.monotonic()
    request_id, token = submit(client, "access", ALICE)  # 202, as usual
    assert time.monotonic() - started < 5
    logged.append(token)
    assert client.get(f"{BASE}/{request_id}", headers=auth(token)).get_json()["status"] \
        == "verifying"

    assert outbox.deliver_due(rt) == 0  # refused: tried again later
    [waiting] = mails(rt)
    assert waiting.status == "pending" and waiting.attempts == 1 and waiting.sent_at is None
    assert waiting.not_before > utcnow() and waiting.lease_owner is None
    assert waiting.last_error and "ConnectionRefused" in waiting.last_error
    assert outbox.deliver_due(rt) == 0 and mails(rt)[0].attempts == 1  # not due yet

    smtp_server.start()
    assert outbox.deliver_due(rt, now=waiting.not_before + timedelta(seconds=1)) == 1
    [mail] = smtp_server.to(ALICE)
    code = code_of(mail)
    logged.append(code)
    answer = client.post(f"{BASE}/{request_id}/verify", json={"code": code},
                         headers=auth(token))
    assert answer.status_code == 200, answer.get_json()
    assert outbox.deliver_due(rt, now=utcnow() + timedelta(days=1)) == 0
    assert len(smtp_server.received) == 1
    [sent] = mails(rt)
    assert sent.status == "sent" and sent.sent_at is not None and sent.attempts == 2


@pytest.mark.parametrize("deliverers", [4])
def test_deliverers_racing_send_each_mail_once(
        smtp_app: Callable[..., Flask], smtp_server: SmtpServer,  # noqa: F811
        deliverers: int) -> None:
    rt = rt_of(smtp_app())
    addresses = [f"person{i}@example.org" for i in range(24)]
    with rt.transaction() as session:
        for address in addresses:
            outbox.enqueue(session, rt, address, "Hello", "A notice.", kind="test-notice")
    start = threading.Barrier(deliverers)

    def deliver() -> int:
        start.wait()
        sent = 0
        while (batch := outbox.deliver_due(rt, limit=3)) > 0:
            sent += batch
        return sent

    runs = [Background(deliver) for _ in range(deliverers)]
    assert all(run.done_within(60) for run in runs)
    assert sum(run.result for run in runs) == len(addresses)
    assert sorted(str(m["To"]) for m in smtp_server.received) == sorted(addresses)
    assert {m.status for m in mails(rt)} == {"sent"}


def test_no_lock_is_held_while_a_mail_is_sent(
        smtp_app: Callable[..., Flask], smtp_server: SmtpServer,  # noqa: F811
        logged: list[str]) -> None:
    """A deliverer stuck in a slow SMTP conversation: submissions (a state
    change and an audit event each) still commit at once."""
    app = smtp_app()
    rt = rt_of(app)
    smtp_server.hold()
    first = Background(lambda: submit(app.test_client(), "access", ALICE))
    try:
        assert first.done_within(5), "the submission waited for the mail server"
        deliverer = Background(lambda: outbox.deliver_due(rt))
        assert smtp_server.entered.wait(10), "the code never reached the mail server"
        second = Background(lambda: submit(app.test_client(), "erasure", BOB))
        assert second.done_within(5), "a submission waited for a mail being sent"
        with rt.transaction() as session:
            assert session.scalar(select(Request.status).where(
                Request.id == second.result[0])) == "verifying"
    finally:
        smtp_server.release()
    assert deliverer.done_within(30) and deliverer.result == 1
    assert outbox.deliver_due(rt) == 1  # the second submission's code
    assert sorted(str(m["To"]) for m in smtp_server.received) == [ALICE, BOB]


def test_recipient_subject_and_body_are_encrypted_then_cleared(
        smtp_app: Callable[..., Flask], smtp_server: SmtpServer,  # noqa: F811
        logged: list[str]) -> None:
    app = smtp_app()
    rt = rt_of(app)
    smtp_server.stop()
    _request_id, token = submit(app.test_client(), "access", ALICE)
    with rt.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM outbox_mails")).all()
    raw = b"".join(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
                   for row in rows for v in row)
    smtp_server.start()
    assert outbox.deliver_due(rt) == 1
    [mail] = smtp_server.received
    code = code_of(mail)
    logged.extend([code, token])
    assert len(rows) == 1 and raw
    for secret in (ALICE, "alice.outbox", code, token, str(mail["Subject"])):
        assert secret.encode() not in raw, f"{secret!r} stored in clear"
    [sent] = mails(rt)
    assert (sent.recipient_ct, sent.subject_ct, sent.body_ct) == (None, None, None)


def test_a_mail_refused_past_the_retry_window_fails_and_is_logged_by_kind_and_id(
        smtp_app: Callable[..., Flask], smtp_server: SmtpServer,  # noqa: F811
        logged: list[str], caplog: pytest.LogCaptureFixture) -> None:
    app = smtp_app(MAIL_RETRY_WINDOW_HOURS=2.0)
    rt = rt_of(app)
    smtp_server.stop()
    submit(app.test_client(), "access", ALICE)
    assert outbox.deliver_due(rt) == 0
    later = utcnow() + timedelta(hours=1)
    assert outbox.deliver_due(rt, now=later) == 0
    assert mails(rt)[0].status == "pending" and mails(rt)[0].attempts == 2
    assert outbox.deliver_due(rt, now=later + timedelta(hours=1, minutes=1)) == 0
    [failed] = mails(rt)
    assert failed.status == "failed" and failed.attempts == 3 and failed.sent_at is None
    assert (failed.recipient_ct, failed.subject_ct, failed.body_ct) == (None, None, None)
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "dsar.outbox" and r.levelno >= logging.WARNING]
    assert any(f"mail {failed.id} (verification-code) failed" in m for m in warnings), warnings
    smtp_server.start()
    assert outbox.deliver_due(rt, now=later + timedelta(days=1)) == 0
    assert smtp_server.received == []


def test_a_recipient_refused_for_good_fails_at_once(
        smtp_app: Callable[..., Flask], smtp_server: SmtpServer,  # noqa: F811
        logged: list[str]) -> None:
    rt = rt_of(smtp_app())
    smtp_server.refuse.add(ALICE)
    with rt.transaction() as session:
        outbox.enqueue(session, rt, ALICE, "Hello", "A notice.", kind="test-notice")
    assert outbox.deliver_due(rt) == 0
    [failed] = mails(rt)
    assert failed.status == "failed" and failed.attempts == 1
    assert failed.last_error and "SMTPRecipientsRefused" in failed.last_error


def test_a_dead_deliverers_mail_is_sent_once_its_lease_ran_out(
        smtp_app: Callable[..., Flask], smtp_server: SmtpServer) -> None:  # noqa: F811
    rt = rt_of(smtp_app())
    with rt.transaction() as session:
        queued = outbox.enqueue(session, rt, ALICE, "Hello", "A notice.", kind="test-notice")
    now = utcnow()
    with rt.transaction() as session:  # as if a deliverer claimed it and died
        session.execute(update(OutboxMail).where(OutboxMail.id == queued.id).values(
            lease_owner="dead:worker", lease_expires_at=now + timedelta(minutes=5),
            attempts=1))
    assert outbox.deliver_due(rt, now=now + timedelta(minutes=1)) == 0  # still its
    assert outbox.deliver_due(rt, now=now + timedelta(minutes=6)) == 1
    assert [str(m["To"]) for m in smtp_server.received] == [ALICE]
    [sent] = mails(rt)
    assert sent.status == "sent" and sent.attempts == 2 and sent.lease_owner is None


def test_development_mode_writes_the_eml_when_delivered(make_app: Callable[..., Flask],
                                                        tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    rt = rt_of(make_app(OUTBOX_DIR=str(folder)))
    with rt.transaction() as session:
        outbox.enqueue(session, rt, ALICE, "Hello", "A notice.", kind="test-notice")
        assert session.info["dsar_mail"] is True  # the engine's commit hook wakes a worker
    assert not folder.exists() or not list(folder.glob("*.eml"))  # queued, not written
    assert outbox.deliver_due(rt) == 1
    [written] = folder.glob("*.eml")
    assert b"To: " + ALICE.encode() in written.read_bytes()


def test_a_rolled_back_change_sends_nothing(
        smtp_app: Callable[..., Flask], smtp_server: SmtpServer) -> None:  # noqa: F811
    rt = rt_of(smtp_app())
    with pytest.raises(RuntimeError), rt.transaction() as session:
        outbox.enqueue(session, rt, ALICE, "Hello", "A notice.", kind="test-notice")
        raise RuntimeError("the state change failed")
    assert outbox.deliver_due(rt) == 0 and mails(rt) == [] and smtp_server.received == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_in_process_executor_delivers_queued_mail(make_app: Callable[..., Flask],
                                                       tmp_path: Path) -> None:
    """What ``dsar run`` and the README's tour rely on: a code lands in the
    outbox folder without anyone calling deliver_due by hand."""
    folder = tmp_path / "outbox"
    app = make_app(OUTBOX_DIR=str(folder), TESTING=True, **UNLIMITED)
    with InProcessExecutor(rt_of(app), 1, poll_seconds=0.05):
        submit(app.test_client(), "access", ALICE)
        deadline = time.monotonic() + 10
        while not list(folder.glob("*.eml")) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(list(folder.glob("*.eml"))) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the app's is below
def test_a_sent_mail_is_recorded_through_an_app_database_outage(
        smtp_app: Callable[..., Flask], smtp_server: SmtpServer,  # noqa: F811
        restartable_pg: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The database goes away while the server holds the mail: the deliverer
    waits for it to come back to record the send, so the mail is not sent
    again once its lease runs out."""
    rt = rt_of(smtp_app(DATABASE_URL=restartable_pg.url))
    with rt.transaction() as session:
        outbox.enqueue(session, rt, ALICE, "Hello", "A notice.", kind="test-notice")
    smtp_server.hold()
    deliverer = Background(lambda: outbox.deliver_due(rt))
    assert smtp_server.entered.wait(10)
    restartable_pg.stop()
    try:
        smtp_server.release()
        wait_for(lambda: "will record" in caplog.text, 20)  # the deliverer finds it away
        assert not deliverer.done_within(0)
    finally:
        restartable_pg.start()
    assert deliverer.done_within(60) and deliverer.result == 1
    assert outbox.deliver_due(rt, now=utcnow() + timedelta(hours=1)) == 0
    assert len(smtp_server.received) == 1 and mails(rt)[0].status == "sent"


def test_a_mail_that_cannot_be_written_is_retried_not_stuck(make_app: Callable[..., Flask],
                                                            tmp_path: Path) -> None:
    """Development: the outbox folder cannot be made (a file is in the way)."""
    blocked = tmp_path / "outbox"
    blocked.write_text("not a folder")
    rt = rt_of(make_app(OUTBOX_DIR=str(blocked)))
    with rt.transaction() as session:
        outbox.enqueue(session, rt, ALICE, "Hello", "A notice.", kind="test-notice")
    assert outbox.deliver_due(rt) == 0
    [waiting] = mails(rt)
    assert waiting.status == "pending" and waiting.lease_owner is None
    assert waiting.last_error == "FileExistsError" and waiting.not_before > utcnow()


def test_a_pending_mail_without_content_fails_and_does_not_block_the_others(
        smtp_app: Callable[..., Flask], smtp_server: SmtpServer) -> None:  # noqa: F811
    rt = rt_of(smtp_app())
    with rt.transaction() as session:
        broken = outbox.enqueue(session, rt, BOB, "Hello", "A notice.", kind="test-notice")
        outbox.enqueue(session, rt, ALICE, "Hello", "A notice.", kind="test-notice")
        session.execute(update(OutboxMail).where(OutboxMail.id == broken.id)
                        .values(body_ct=None))
    assert outbox.deliver_due(rt) == 1
    assert [m.status for m in mails(rt)] == ["failed", "sent"]
    assert [str(m["To"]) for m in smtp_server.received] == [ALICE]
