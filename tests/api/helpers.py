"""What the API tests share: the outbox, a submission, the error shape, row counts."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from dsar.executor import InProcessExecutor
from dsar.models import AuditEvent, Request
from dsar.runtime import Runtime
from tests.support.smtp import deliver

ALICE, BOB = "alice@example.org", "bob@example.org"
BASE = "/api/v1/requests"
#: the code in a code mail's body: six digits on a line of their own
CODE_LINE = re.compile(r"^\s*([0-9]{6})\s*$", re.MULTILINE)


class Outbox:
    """The verification mails written to ``OUTBOX_DIR``, read once each.
    ``runtimes`` are the apps whose queued mail is delivered before each look
    (what a worker does after the commit)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: set[str] = set()
        self.runtimes: list[Runtime] = []

    def unread(self, to: str) -> list[str]:
        """Codes of the mails to ``to`` not read before, oldest first."""
        deliver(*self.runtimes)
        found: list[tuple[int, str]] = []
        for file in self.path.glob("*.eml") if self.path.exists() else []:
            if file.name in self.seen:
                continue
            message = email.message_from_bytes(file.read_bytes(), policy=email.policy.default)
            if str(message["To"]) != to:
                continue
            self.seen.add(file.name)
            match = CODE_LINE.search(message.get_body().get_content())  # type: ignore[union-attr]
            assert match, "a code mail without a code on a line of its own"
            found.append((file.stat().st_mtime_ns, match.group(1)))
        return [code for _, code in sorted(found)]

    def code(self, to: str) -> str:
        """The code of the one new mail to ``to``."""
        codes = self.unread(to)
        assert len(codes) == 1, f"expected one new mail, found {len(codes)}"
        return codes[0]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def submit(client: FlaskClient, kind: str = "access", address: str = ALICE,
           **environ: Any) -> tuple[str, str]:
    """Submit through the API; returns (id, status token)."""
    response = client.post(BASE, json={"kind": kind, "email": address},
                           environ_base=environ)
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    return body["id"], body["status_token"]


def error_of(response: TestResponse, status: int, code: str | None = None) -> dict[str, Any]:
    """The ``error`` object of a JSON error answer, checked for its shape."""
    assert response.status_code == status, (response.status_code, response.get_data()[:300])
    assert response.mimetype == "application/json", response.mimetype
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


def counts(rt: Runtime) -> tuple[int, int]:
    """Rows in ``requests`` and ``audit_events``."""
    with rt.transaction() as session:
        return (session.scalar(select(func.count()).select_from(Request)) or 0,
                session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def process(rt: Runtime, timeout: float = 30) -> None:
    """Run the executor until no task is left."""
    with InProcessExecutor(rt, 2, poll_seconds=0.05) as executor:
        assert executor.wait_until_idle(timeout)
