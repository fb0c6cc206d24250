"""A real SMTP server for the mail tests (aiosmtpd on 127.0.0.1), and the dev outbox.

``smtp_server`` is a fixture: an :class:`SmtpServer` listening on a free port.
Tests stop and start it on the same port (an SMTP outage), make it hold a
message before answering (``hold()``: a slow server, released by ``release()``)
or refuse a recipient for good (``refuse``). ``received`` lists what it
accepted, in order. ``deliver(rt)`` hands over every due mail of the outbox
table, for tests that read codes before a worker has run.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from dsar import outbox
from dsar.database import utcnow
from dsar.models import OutboxMail
from dsar.runtime import Runtime
from tests.support.servers import free_port

__all__ = ["SmtpServer", "deliver", "smtp_server"]


def deliver(*runtimes: Runtime) -> int:
    """Send (or write) every due mail of each runtime's outbox; how many went.
    A mail a running executor's mailer holds right now is waited for (up to
    10 s), so a test reading the outbox next finds it there."""
    sent = 0
    for rt in runtimes:
        while (batch := outbox.deliver_due(rt)) > 0:
            sent += batch
        deadline = time.monotonic() + 10
        while _held_elsewhere(rt) and time.monotonic() < deadline:
            time.sleep(0.02)
    return sent


def _held_elsewhere(rt: Runtime) -> bool:
    """Is a due mail being sent by someone else (claimed, not yet recorded)?"""
    with rt.transaction() as session:
        return bool(session.scalar(select(func.count()).select_from(OutboxMail).where(
            OutboxMail.status == "pending", OutboxMail.lease_owner.is_not(None),
            OutboxMail.lease_expires_at > utcnow())))


@dataclass
class _Handler:
    server: SmtpServer

    async def handle_RCPT(self, _server: Any, _session: Any, envelope: Any, address: str,
                          _options: list[str]) -> str:
        if address in self.server.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        self.server.entered.set()
        gate = self.server.gate
        if gate is not None:  # a slow server: the message waits for the test
            await asyncio.get_running_loop().run_in_executor(None, gate.wait, 60)
        message = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
        with self.server.lock:
            self.server.received.append(message)  # type: ignore[arg-type]
        return "250 OK"


@dataclass
class SmtpServer:
    port: int = field(default_factory=free_port)
    received: list[EmailMessage] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    gate: threading.Event | None = None
    entered: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self._controller is None:
            self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
            self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def hold(self) -> None:
        """From now on every message waits in DATA until :meth:`release`."""
        self.gate, self.entered = threading.Event(), threading.Event()

    def release(self) -> None:
        if self.gate is not None:
            self.gate.set()

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.received if str(m["To"]) == address]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.release()
    server.stop()
