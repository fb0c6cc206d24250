"""An officer's browser on the console: the Flask test client, its cookies,
the CSRF token of the last page, and the officer's authenticator app."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pyotp
from flask import Flask
from werkzeug.test import TestResponse

from dsar.clock import MovableClock
from dsar.officers import accounts
from dsar.runtime import Runtime
from dsar.workflow import requests as flow

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_SECRET = re.compile(r'name="secret" value="([A-Z2-7]{32})"')
_CODES = re.compile(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>")


def erasure_under_review(rt: Runtime, identifiers: dict[str, list[str]]) -> str:
    """An erasure verified out of band: awaiting review (its preview not computed)."""
    with rt.transaction() as session:
        request = flow.submit(session, rt, "erasure", identifiers)
        flow.mark_verified(session, rt, request, actor="operator:test", method="out-of-band")
        assert request.status == "awaiting_review"
        return request.id


@dataclass
class Officer:
    email: str
    role: str
    secret: str = ""
    recovery: list[str] = field(default_factory=list)
    id: str = ""


class Console:
    """One browser. ``clock`` is the app's (moved by tests: TOTP codes follow it)."""

    def __init__(self, app: Flask, address: str = "192.0.2.10") -> None:
        self.app = app
        self.client = app.test_client()
        self.client.environ_base["REMOTE_ADDR"] = address
        self._csrf: str | None = None

    @property
    def rt(self) -> Runtime:
        rt: Runtime = self.app.extensions["dsar"]
        return rt

    @property
    def clock(self) -> MovableClock:
        clock = self.rt.clock
        assert isinstance(clock, MovableClock)
        return clock

    def get(self, path: str) -> TestResponse:
        page = self.client.get(path)
        found = _CSRF.search(page.text)
        if found:
            self._csrf = found.group(1)
        return page

    def csrf(self) -> str:
        if self._csrf is None:
            self.get("/console/sign-in")
        assert self._csrf is not None
        return self._csrf

    def post(self, path: str, **data: str) -> TestResponse:
        return self.client.post(path, data={"csrf_token": self.csrf(), **data})

    def invite(self, email: str, role: str) -> tuple[Officer, str]:
        """An officer invited from the CLI's function; returns the set-up path."""
        with self.rt.transaction() as session:
            invitation = accounts.create(session, self.rt, email, role, actor="operator:test")
        return Officer(email, role, id=invitation.officer_id), urlsplit(invitation.url).path

    def set_up(self, officer: Officer, path: str) -> TestResponse:
        page = self.get(path)
        assert page.status_code == 200, page.text
        found = _SECRET.search(page.text)
        assert found, "the set-up page shows no secret"
        officer.secret = found.group(1)
        done = self.post(path, password=PASSWORD, confirm=PASSWORD, secret=officer.secret,
                         code=self.totp(officer))
        officer.recovery = _CODES.findall(done.text)
        return done

    def totp(self, officer: Officer) -> str:
        return pyotp.TOTP(officer.secret).at(self.rt.now())

    def sign_in(self, officer: Officer, code: str | None = None,
                password: str = PASSWORD, next_: str = "") -> TestResponse:
        self.clock.advance(seconds=30)  # a fresh TOTP step: each code is good once
        self.get("/console/sign-in")
        return self.post("/console/sign-in", email=officer.email, password=password,
                         code=self.totp(officer) if code is None else code, next=next_)

    def officer(self, email: str, role: str) -> Officer:
        """Invited, set up and signed in."""
        officer, path = self.invite(email, role)
        assert self.set_up(officer, path).status_code == 200
        signed = self.sign_in(officer)
        assert signed.status_code == 303, signed.text
        return officer
