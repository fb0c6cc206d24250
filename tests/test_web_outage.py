"""The app database gone or locked, as the portal and the API see it.

While the app database cannot be reached (a real PostgreSQL the test stops)
or stays locked past SQLite's busy timeout (a second connection the test
holds in ``BEGIN EXCLUSIVE``), every page and API call that needs it answers
503 with a short ``Retry-After`` (JSON for the API, a plain "try again
shortly" page for the portal), writes nothing, and the log gets one line for
the outage instead of one traceback per request. The first request after the
database returns is served normally.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc
from flask import Flask
from werkzeug.test import TestResponse

from dsar.texts import DEFAULTS as T
from tests.api.conftest import GENEROUS
from tests.api.helpers import BASE, auth, counts, error_of

ALICE, BOB = "alice@example.org", "bob@example.org"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
#: seconds the app's SQLite connections wait for a lock in these tests
BUSY_SECONDS = 0.2


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``restartable``: a database on the PostgreSQL these tests stop and start;
    ``sqlite``: a file whose busy timeout is short."""
    if request.param == "restartable":
        url: str = request.getfixturevalue("restartable_pg").url
        return url
    return f"sqlite:///{tmp_path / 'dsar.sqlite3'}?timeout={BUSY_SECONDS}"


@pytest.fixture
def web(make_app: Callable[..., Flask], tmp_path: Path) -> Flask:
    """An app with errors propagated (``TESTING``): a 500 would fail the test."""
    return make_app(OUTBOX_DIR=str(tmp_path / "outbox"), TESTING=True, **GENEROUS)


class Requester:
    """Both faces at once: an API client with its request, a browser with its own."""

    def __init__(self, app: Flask) -> None:
        self.api, self.browser = app.test_client(), app.test_client()
        self.csrf = _CSRF.search(self.browser.get("/").text).group(1)  # type: ignore[union-attr]
        submitted = self.api.post(BASE, json={"kind": "access", "email": ALICE})
        assert submitted.status_code == 202, submitted.text
        self.api_id, self.token = submitted.json["id"], submitted.json["status_token"]  # type: ignore[index]
        posted = self.form(ALICE)
        assert posted.status_code == 303, posted.text
        self.portal_id = posted.headers["Location"].rsplit("/", 1)[1]

    def form(self, address: str) -> TestResponse:
        return self.browser.post("/requests", data={"csrf_token": self.csrf, "kind": "access",
                                                    "email": address})

    def every_call(self) -> dict[str, TestResponse]:
        """One call of each kind that needs the database, by name."""
        token = auth(self.token)
        return {
            "api submit": self.api.post(BASE, json={"kind": "access", "email": BOB}),
            "api status": self.api.get(f"{BASE}/{self.api_id}", headers=token),
            "api verify": self.api.post(f"{BASE}/{self.api_id}/verify", json={"code": "123456"},
                                        headers=token),
            "portal submit": self.form(BOB),
            "portal status": self.browser.get(f"/requests/{self.portal_id}"),
            "portal verify": self.browser.post(f"/requests/{self.portal_id}/verify",
                                               data={"csrf_token": self.csrf, "code": "123456"}),
        }


def assert_unavailable(name: str, answer: TestResponse) -> None:
    assert answer.status_code == 503, (name, answer.status_code, answer.text[:300])
    assert 0 < int(answer.headers["Retry-After"]) <= 30, name
    assert answer.headers["Cache-Control"] == "no-store", name
    if name.startswith("api"):
        error = error_of(answer, 503, "temporarily_unavailable")
        assert error["message"] == T["api.unavailable"], name
    else:
        assert answer.mimetype == "text/html", name
        assert T["error.unavailable.title"] in answer.text, name
        assert T["error.unavailable.body"] in answer.text, name
    assert "Traceback" not in answer.text and "SQL" not in answer.text, name


def assert_one_line_per_outage(caplog: pytest.LogCaptureFixture, at_most: int = 2) -> None:
    """No traceback, no SQL, no address; a line or two, not one per request."""
    noted = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(noted) <= at_most, [f"{r.name}: {r.getMessage()}" for r in noted]
    for record in caplog.records:
        text = record.getMessage()
        assert record.exc_info is None and record.exc_text is None, text
        assert "Traceback" not in text and "SELECT" not in text and "INSERT" not in text, text
        assert ALICE not in text and BOB not in text, text


@pytest.mark.parametrize("database_url", ["restartable"], indirect=True)
def test_postgresql_stopped_is_503_until_it_returns(web: Flask, restartable_pg: Any,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    requester = Requester(web)
    rt = web.extensions["dsar"]
    before = counts(rt)
    caplog.set_level(logging.DEBUG, logger="dsar")
    restartable_pg.stop()
    for _round in range(3):
        for name, answer in requester.every_call().items():
            assert_unavailable(name, answer)
    assert_one_line_per_outage(caplog, at_most=1)
    assert any("unavailable" in r.getMessage() for r in caplog.records)

    restartable_pg.start()
    first = requester.api.get(f"{BASE}/{requester.api_id}", headers=auth(requester.token))
    assert first.status_code == 200, first.text
    for name, answer in requester.every_call().items():
        assert answer.status_code < 500, (name, answer.status_code)
    assert "Retry-After" not in first.headers
    # the two submissions after the outage (the second, for the same address and kind,
    # joins the first), no more
    assert counts(rt)[0] == before[0] + 1
    assert_one_line_per_outage(caplog, at_most=2)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_locked_past_its_timeout_is_503(web: Flask, database_url: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    requester = Requester(web)
    rt = web.extensions["dsar"]
    before = counts(rt)
    caplog.set_level(logging.DEBUG, logger="dsar")
    with holding_the_write_lock(database_url):
        for _round in range(2):
            for name, answer in requester.every_call().items():
                assert_unavailable(name, answer)
    assert_one_line_per_outage(caplog, at_most=1)
    status = requester.browser.get(f"/requests/{requester.portal_id}")
    assert status.status_code == 200 and "Retry-After" not in status.headers
    assert counts(rt) == before
    assert_one_line_per_outage(caplog, at_most=2)


@pytest.mark.parametrize("database_url", ["restartable"], indirect=True)
def test_postgresql_not_answering_is_503_after_the_connect_timeout(
        make_app: Callable[..., Flask], restartable_pg: Any, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A server that accepts the connection and never answers (frozen, as
    behind a dead link): with ``connect_timeout`` in the URL, a 503 after it."""
    web = make_app(DATABASE_URL=f"{restartable_pg.url}?connect_timeout=1",
                   OUTBOX_DIR=str(tmp_path / "outbox"), TESTING=True, **GENEROUS)
    requester = Requester(web)
    web.extensions["dsar"].engine.dispose()  # pooled sessions would keep working
    caplog.set_level(logging.DEBUG, logger="dsar")
    restartable_pg.freeze()
    try:
        answer = requester.api.get(f"{BASE}/{requester.api_id}", headers=auth(requester.token))
        assert_unavailable("api status", answer)  # libpq waits 2 s at least
    finally:
        restartable_pg.thaw()
    assert requester.browser.get(f"/requests/{requester.portal_id}").status_code == 200
    assert_one_line_per_outage(caplog)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("error", [
    sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"),
    sqlalchemy.exc.OperationalError("SELECT 1", {"email": ALICE}, Exception("gone"),
                                    connection_invalidated=True),
], ids=["pool exhausted", "connection invalidated"])
def test_every_kind_of_outage_is_503(web: Flask, monkeypatch: pytest.MonkeyPatch,
                                     caplog: pytest.LogCaptureFixture, error: Exception) -> None:
    requester = Requester(web)

    def away(*_args: object, **_kwargs: object) -> None:
        raise error

    monkeypatch.setattr("dsar.workflow.verification.find_token", away)
    caplog.set_level(logging.DEBUG, logger="dsar")
    token = auth(requester.token)
    assert_unavailable("api status", requester.api.get(f"{BASE}/{requester.api_id}",
                                                       headers=token))
    assert_unavailable("api verify", requester.api.post(
        f"{BASE}/{requester.api_id}/verify", json={"code": "123456"}, headers=token))
    assert_unavailable("portal status", requester.browser.get(
        f"/requests/{requester.portal_id}"))
    assert_one_line_per_outage(caplog, at_most=1)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_database_bug_is_still_a_500(web: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing table is a deployment bug, not an outage: no Retry-After."""
    requester = Requester(web)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise sqlalchemy.exc.OperationalError("SELECT x", {}, sqlite3.OperationalError(
            "no such table: requests"))

    monkeypatch.setattr("dsar.workflow.verification.find_token", broken)
    answer = requester.api.get(f"{BASE}/{requester.api_id}", headers=auth(requester.token))
    error_of(answer, 500, "internal_error")
    with pytest.raises(sqlalchemy.exc.OperationalError):  # TESTING: the portal propagates
        requester.browser.get(f"/requests/{requester.portal_id}")


class holding_the_write_lock:
    """A second SQLite connection holding ``BEGIN EXCLUSIVE`` for the block."""

    def __init__(self, url: str) -> None:
        self.path = url.removeprefix("sqlite:///").split("?", 1)[0]

    def __enter__(self) -> sqlite3.Connection:
        self.connection = sqlite3.connect(self.path, isolation_level=None)
        self.connection.execute("BEGIN EXCLUSIVE")
        return self.connection

    def __exit__(self, *_exc: object) -> None:
        self.connection.execute("ROLLBACK")
        self.connection.close()


def test_sqlite_busy_timeout_follows_the_url(tmp_path: Path) -> None:
    from dsar.database import make_engine

    for url, expected in ((f"sqlite:///{tmp_path / 'a.db'}", 30000),
                          (f"sqlite:///{tmp_path / 'b.db'}?timeout=0.25", 250)):
        engine = make_engine(url)
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == expected
        engine.dispose()


