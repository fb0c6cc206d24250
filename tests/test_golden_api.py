"""Golden files: what the API answers, status line, headers and body.

The status document of a request in each state a requester meets (verifying,
processing, completed with its download, downloads used up, an erasure
awaiting review), the answers that lead there (202 submitted, 200 verified,
202 code sent again, the zip's headers and digest), and every error body the
API returns, one golden file per code: 400, 401, 404, 405, 409, 410, 413,
415, 429, 500 and 503. Through the Flask test client, with a frozen clock
and seeded ids, tokens and codes. The rate limiter keeps its own time: the
reset time it announces (``X-RateLimit-Reset``, its 429's ``Retry-After``)
is shown as such, not pinned, and so is a download's ``Last-Modified`` (the
zip file's time on disk). SQLite only: the answers do not depend on the
app database.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.exc import OperationalError
from syrupy.assertion import SnapshotAssertion
from werkzeug.test import TestResponse

from dsar.api import views
from dsar.clock import MovableClock
from dsar.executor import InProcessExecutor
from dsar.runtime import Runtime
from tests.api.helpers import ALICE, BASE, Outbox, auth
from tests.support.engine_connectors import Script
from tests.support.golden import frozen, golden  # noqa: F401

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

GENEROUS = {"RATE_LIMIT_SUBMIT": "1000 per minute", "RATE_LIMIT_VERIFY": "1000 per minute",
            "RATE_LIMIT_RESEND": "1000 per minute"}
#: headers whose value is the rate limiter's own time, or the zip file's
#: modification time (send_file's Last-Modified), not the runtime's clock
NOT_THE_CLOCK = {"X-RateLimit-Reset": "(the rate limiter's clock)",
                 "Last-Modified": "(the file's modification time)"}


class Api:
    """A test client of an app with a scripted store holding 2 records of
    ALICE, a frozen clock and the outbox; each call's answer rendered."""

    def __init__(self, app: Flask, outbox: Outbox) -> None:
        self.app, self.client, self.outbox = app, app.test_client(), outbox
        self.rt: Runtime = app.extensions["dsar"]
        self.clock: MovableClock = frozen(self.rt)

    def call(self, method: str, path: str, token: str | None = None,
             **options: Any) -> TestResponse:
        headers = dict(options.pop("headers", {}))
        if token is not None:
            headers.update(auth(token))
        return self.client.open(path, method=method, headers=headers, **options)

    def submit(self, kind: str = "access") -> tuple[str, str]:
        body = self.call("POST", BASE, json={"kind": kind, "email": ALICE}).get_json()
        return body["id"], body["status_token"]

    def verify(self, request_id: str, token: str) -> TestResponse:
        return self.call("POST", f"{BASE}/{request_id}/verify", token,
                         json={"code": self.outbox.code(ALICE)})

    def completed(self) -> tuple[str, str]:
        """An access request verified and processed to its bundle."""
        request_id, token = self.submit()
        verified = self.verify(request_id, token)
        assert verified.status_code == 200
        token = verified.get_json()["status_token"]  # the old one stopped working
        with InProcessExecutor(self.rt, 1, poll_seconds=0.05) as executor:
            assert executor.wait_until_idle(30)
        return request_id, token


def shown(response: TestResponse) -> str:
    """The answer as a golden file: status line, headers (sorted), body;
    a zip as its size and SHA-256."""
    limited = response.status_code == 429 and "retry_after" not in response.get_data(True)
    lines = [f"HTTP {response.status}"]
    for name, value in sorted(response.headers.items()):
        if name in NOT_THE_CLOCK:
            value = NOT_THE_CLOCK[name]
        elif limited and name == "Retry-After":
            value = "(the rate limiter's clock)"
        lines.append(f"{name}: {value}")
    data = response.get_data()
    response.close()  # a download streams from its file
    if response.mimetype == "application/zip":
        body = f"({len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()})\n"
    else:
        body = data.decode("utf-8")
    return "\n".join(lines) + "\n\n" + body


@pytest.fixture
def make_golden_api(make_app: Callable[..., Flask], tmp_path: Path, scripts: dict[str, Script],
                    seeded: object) -> Callable[..., Api]:
    def factory(**config: Any) -> Api:
        scripts["crm"] = Script()
        scripts["crm"].seed(ALICE, 2)
        outbox = Outbox(tmp_path / "outbox")
        settings = {"OUTBOX_DIR": str(outbox.path), "BASE_URL": "https://privacy.example.com",
                    **GENEROUS, **config}
        app = make_app({"crm": {"type": "scripted", "script": "crm", "label": "Customer accounts"}},
                       **settings)
        outbox.runtimes.append(app.extensions["dsar"])
        return Api(app, outbox)

    return factory


@pytest.fixture
def api(make_golden_api: Callable[..., Api]) -> Api:
    return make_golden_api()


# -- status documents and the answers that lead to them ----------------------------------

def test_an_access_request_from_submission_to_its_last_download(
        api: Api, golden: SnapshotAssertion) -> None:  # noqa: F811
    answer = api.call("POST", BASE, json={"kind": "access", "email": ALICE, "name": "Alice"})
    assert golden(name="submitted") == shown(answer)
    request_id, token = answer.get_json()["id"], answer.get_json()["status_token"]
    here = f"{BASE}/{request_id}"
    assert golden(name="verifying") == shown(api.call("GET", here, token))
    api.outbox.code(ALICE)  # the first code, which the one sent again replaces
    api.clock.advance(minutes=2)
    assert golden(name="code sent again") == shown(api.call("POST", f"{here}/resend", token))
    api.clock.advance(minutes=1)
    verified = api.verify(request_id, token)
    assert golden(name="verified") == shown(verified)
    token = verified.get_json()["status_token"]  # the old one stopped working
    assert golden(name="processing") == shown(api.call("GET", here, token))
    with InProcessExecutor(api.rt, 1, poll_seconds=0.05) as executor:
        assert executor.wait_until_idle(30)
    api.clock.advance(hours=1)
    assert golden(name="completed") == shown(api.call("GET", here, token))
    for n in (1, 2, 3):
        assert golden(name=f"download {n}") == shown(api.call("GET", f"{here}/export", token))
    assert golden(name="downloads used up") == shown(api.call("GET", here, token))


def test_an_erasure_awaiting_review(api: Api, golden: SnapshotAssertion) -> None:  # noqa: F811
    request_id, token = api.submit("erasure")
    token = api.verify(request_id, token).get_json()["status_token"]
    assert golden == shown(api.call("GET", f"{BASE}/{request_id}", token))


# -- every error body ---------------------------------------------------------------------

def _wrong_codes(api: Api, times: int) -> TestResponse:
    request_id, token = api.submit()
    answer = None
    for _ in range(times):
        answer = api.call("POST", f"{BASE}/{request_id}/verify", token, json={"code": "000000"})
    assert answer is not None
    return answer


def _expired_code(api: Api) -> TestResponse:
    request_id, token = api.submit()
    api.clock.advance(minutes=15)
    return api.verify(request_id, token)


def _verified_twice(api: Api) -> TestResponse:
    request_id, token = api.submit()
    token = api.verify(request_id, token).get_json()["status_token"]
    return api.call("POST", f"{BASE}/{request_id}/verify", token, json={"code": "123456"})


def _export_of_erasure(api: Api) -> TestResponse:
    request_id, token = api.submit("erasure")
    return api.call("GET", f"{BASE}/{request_id}/export", token)


def _export_not_ready(api: Api) -> TestResponse:
    request_id, token = api.submit()
    return api.call("GET", f"{BASE}/{request_id}/export", token)


def _export_expired(api: Api) -> TestResponse:
    request_id, token = api.completed()
    api.clock.advance(days=7)
    return api.call("GET", f"{BASE}/{request_id}/export", token)


def _export_exhausted(api: Api) -> TestResponse:
    request_id, token = api.completed()
    for _ in range(3):
        api.call("GET", f"{BASE}/{request_id}/export", token).close()
    return api.call("GET", f"{BASE}/{request_id}/export", token)


def _resend_too_soon(api: Api) -> TestResponse:
    request_id, token = api.submit()
    api.clock.advance(seconds=20)
    return api.call("POST", f"{BASE}/{request_id}/resend", token)


def _head_of_export(api: Api) -> TestResponse:
    request_id, token = api.submit()
    return api.call("HEAD", f"{BASE}/{request_id}/export", token)


def _unknown_request(api: Api) -> TestResponse:
    request_id, _token = api.submit()
    return api.call("GET", f"{BASE}/{request_id}", "not-the-token")


def _token_missing(api: Api) -> TestResponse:
    request_id, _token = api.submit()
    return api.call("GET", f"{BASE}/{request_id}")


def _token_malformed(api: Api) -> TestResponse:
    request_id, _token = api.submit()
    return api.call("GET", f"{BASE}/{request_id}", headers={"Authorization": "Basic YTpi"})


def _fails(monkeypatch: pytest.MonkeyPatch, error: Exception) -> Callable[[Api], TestResponse]:
    def answer(api: Api) -> TestResponse:
        request_id, token = api.submit()

        def broken(*_args: object) -> None:
            raise error

        monkeypatch.setattr(views, "status_document", broken)
        return api.call("GET", f"{BASE}/{request_id}", token)

    return answer


OUTAGE = OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked"))

ERRORS: dict[str, Callable[..., TestResponse]] = {
    "400 invalid_json": lambda api: api.call("POST", BASE, data="{",
                                             content_type="application/json"),
    "400 not_an_object": lambda api: api.call("POST", BASE, json=[ALICE]),
    "400 empty_body": lambda api: api.call("POST", BASE),
    "400 invalid_fields": lambda api: api.call(
        "POST", BASE, json={"kind": "copy", "email": "alice", "colour": "red"}),
    "400 wrong_code": lambda api: _wrong_codes(api, 1),
    "401 token_missing": _token_missing,
    "401 token_malformed": _token_malformed,
    "404 not_found": _unknown_request,
    "404 no_route": lambda api: api.call("GET", "/api/v1/nothing"),
    "405 method_not_allowed": lambda api: api.call("DELETE", f"{BASE}/{'0' * 32}"),
    "405 head of the export": _head_of_export,
    "409 not_waiting": _verified_twice,
    "409 no_export": _export_of_erasure,
    "409 export_not_ready": _export_not_ready,
    "410 code_expired": _expired_code,
    "410 too_many_attempts": lambda api: _wrong_codes(api, 5),
    "410 export_expired": _export_expired,
    "410 export_exhausted": _export_exhausted,
    "413 body_too_large": lambda api: api.call(
        "POST", BASE, data="x" * (64 * 1024 + 1), content_type="application/json"),
    "415 unsupported_media_type": lambda api: api.call("POST", BASE, data="kind=access",
                                                       content_type="text/plain"),
    "429 resend_too_soon": _resend_too_soon,
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_error(api: Api, case: str, golden: SnapshotAssertion) -> None:  # noqa: F811
    answer = ERRORS[case](api)
    assert answer.status_code == int(case.split()[0]), answer.get_data()
    assert golden == shown(answer)


def test_error_429_rate_limited(make_golden_api: Callable[..., Api],
                                golden: SnapshotAssertion) -> None:  # noqa: F811
    api = make_golden_api(RATE_LIMIT_SUBMIT="1 per minute")
    api.submit()
    answer = api.call("POST", BASE, json={"kind": "access", "email": "bob@example.org"})
    assert answer.status_code == 429
    assert golden == shown(answer)


@pytest.mark.parametrize(("case", "error"), [("500 internal_error", RuntimeError("a bug")),
                                             ("503 temporarily_unavailable", OUTAGE)],
                         ids=["500 internal_error", "503 temporarily_unavailable"])
def test_error_of_the_server(api: Api, monkeypatch: pytest.MonkeyPatch, case: str,
                             error: Exception, caplog: pytest.LogCaptureFixture,
                             golden: SnapshotAssertion) -> None:  # noqa: F811
    answer = _fails(monkeypatch, error)(api)
    assert answer.status_code == int(case.split()[0])
    assert golden == shown(answer)


def test_the_clock_moves_what_it_should(api: Api) -> None:
    """A guard on the goldens' premise: a status document read a day later
    says the same but for nothing (its times are stored, not computed)."""
    request_id, token = api.submit()
    before = shown(api.call("GET", f"{BASE}/{request_id}", token))
    api.clock.advance(timedelta(days=1))
    assert shown(api.call("GET", f"{BASE}/{request_id}", token)) == before
