"""A requester's browser on the portal: the test client plus the dev outbox."""

from __future__ import annotations

import email
import re
from email.message import Message
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from dsar.models import AuditEvent, Request
from dsar.runtime import Runtime
from tests.support.smtp import deliver

ALICE = "alice@example.org"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
#: the code in a code mail's body: six digits on a line of their own
CODE_LINE = re.compile(r"^\s*([0-9]{6})\s*$", re.MULTILINE)
#: the status link in a mail (the code mail's carries the mail's own token)
LINK = re.compile(r"https?://[^/\s]+(/requests/[0-9a-f]{32}\?token=[A-Za-z0-9_-]+)")


def body_of(mail: Message) -> str:
    """A plain-text mail's body, decoded."""
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(mail.get_content_charset() or "utf-8")


def link_in(mail: Message) -> str:
    """The path and query of the status link in ``mail``."""
    found = LINK.search(body_of(mail))
    assert found, "a mail without a status link"
    return found.group(1)


class Outbox:
    """The ``.eml`` files the app writes; :meth:`new` returns the unread ones,
    after delivering the mail ``rt`` queued (what a worker does after the commit)."""

    def __init__(self, path: Path, rt: Runtime | None = None) -> None:
        self.path = path
        self.rt = rt
        self.seen: set[Path] = set()

    def new(self) -> list[Message]:
        if self.rt is not None:
            deliver(self.rt)
        files = sorted(set(self.path.glob("*.eml")) - self.seen) if self.path.exists() else []
        self.seen.update(files)
        return [email.message_from_bytes(f.read_bytes()) for f in files]

    def code(self) -> str:
        """The code of the one mail written since the last look."""
        mails = self.new()
        assert len(mails) == 1, f"expected one new mail, found {len(mails)}"
        found = CODE_LINE.search(body_of(mails[0]))
        assert found, "a code mail without a code on a line of its own"
        return found.group(1)


class Browser:
    """One requester: a cookie jar (session, CSRF token) and the outbox."""

    def __init__(self, app: Flask, **environ: Any) -> None:
        self.app = app
        self.client = app.test_client()
        if environ:
            self.client.environ_base.update(environ)
        self.outbox = Outbox(Path(app.config["OUTBOX_DIR"]), app.extensions["dsar"])
        self._csrf: str | None = None

    @property
    def rt(self) -> Runtime:
        rt: Runtime = self.app.extensions["dsar"]
        return rt

    def csrf(self) -> str:
        if self._csrf is None:
            page = self.client.get("/")
            found = _CSRF.search(page.text)
            assert found, "the form has no CSRF token"
            self._csrf = found.group(1)
        return self._csrf

    def submit(self, kind: str | None = "access", email_: str | None = ALICE,
               **fields: str) -> TestResponse:
        data = {"csrf_token": self.csrf(), **fields}
        data.update({k: v for k, v in (("kind", kind), ("email", email_)) if v is not None})
        return self.client.post("/requests", data=data)

    def start(self, kind: str = "access", email_: str = ALICE) -> str:
        """Submit and follow to the status page; returns the request id."""
        answer = self.submit(kind, email_)
        assert answer.status_code == 303, answer.text
        return answer.headers["Location"].rsplit("/", 1)[1]

    def status(self, request_id: str) -> TestResponse:
        return self.client.get(f"/requests/{request_id}")

    def verify(self, request_id: str, code: str) -> TestResponse:
        return self.client.post(f"/requests/{request_id}/verify",
                                data={"csrf_token": self.csrf(), "code": code})

    def resend(self, request_id: str) -> TestResponse:
        return self.client.post(f"/requests/{request_id}/resend",
                                data={"csrf_token": self.csrf()})

    def download(self, request_id: str) -> tuple[int, bytes, TestResponse]:
        """Status, body and the (closed) response: the zip's file handle is released."""
        answer = self.client.get(f"/requests/{request_id}/download")
        with answer:
            return answer.status_code, answer.get_data(), answer


def count(rt: Runtime, model: type[Any] = Request, **where: Any) -> int:
    with rt.transaction() as session:
        stmt = select(func.count()).select_from(model)
        for name, value in where.items():
            stmt = stmt.where(getattr(model, name) == value)
        return int(session.scalar(stmt) or 0)


def events(rt: Runtime, request_id: str) -> list[str]:
    with rt.transaction() as session:
        return list(session.scalars(select(AuditEvent.action).where(
            AuditEvent.request_id == request_id).order_by(AuditEvent.seq)))


def status_of(rt: Runtime, request_id: str) -> str:
    with rt.transaction() as session:
        found = session.get(Request, request_id)
        assert found is not None
        return found.status
