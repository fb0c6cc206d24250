"""Errors are JSON everywhere under /api/v1: unknown addresses, wrong methods,
downloads not ready or expired, and the unexpected (a bare 500, logged
without personal data)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from dsar.database import utcnow
from dsar.models import ExportBundle
from dsar.runtime import Runtime
from tests.api.helpers import ALICE, BASE, Outbox, auth, error_of, process, submit
from tests.support.engine_connectors import Script


@pytest.mark.parametrize("path", ["/api/v1/", "/api/v1/nothing", "/api/v1/requests/",
                                  "/api/v1/requests/abc/nothing", "/api/v1/requests/a/b/c"])
def test_unknown_addresses_are_json_404(client: FlaskClient, path: str) -> None:
    for method in ("GET", "POST", "DELETE", "OPTIONS"):
        error = error_of(client.open(path, method=method), 404, "not_found")
        assert error["message"] == client.application.extensions["dsar"].texts["api.no_route"]


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("DELETE", "/api/v1/requests/abc", {"GET", "HEAD", "OPTIONS"}),
    ("PUT", "/api/v1/requests/abc/verify", {"POST", "OPTIONS"}),
    ("GET", "/api/v1/requests/abc/resend", {"POST", "OPTIONS"}),
    ("PATCH", "/api/v1/requests", {"POST", "OPTIONS"}),
    ("GET", "/api/v1/requests", {"POST", "OPTIONS"}),
])
def test_a_wrong_method_is_json_405_with_allow(client: FlaskClient, method: str, path: str,
                                               allowed: set[str]) -> None:
    response = client.open(path, method=method, json={})
    error_of(response, 405, "method_not_allowed")
    assert set(response.headers["Allow"].split(", ")) == allowed


def test_head_does_not_spend_a_download(client: FlaskClient, outbox: Outbox) -> None:
    request_id, token = submit(client)
    response = client.head(f"{BASE}/{request_id}/export", headers=auth(token))
    assert response.status_code == 405 and response.headers["Allow"] == "GET"


def test_export_before_completion_is_409(make_api: Callable[..., Flask],
                                         scripts: dict[str, Script], outbox: Outbox) -> None:
    scripts["crm"] = Script()
    client = make_api({"crm": {"type": "scripted", "script": "crm"}}).test_client()
    request_id, token = submit(client)
    url = f"{BASE}/{request_id}/export"
    error_of(client.get(url, headers=auth(token)), 409, "export_not_ready")  # verifying
    token = client.post(f"{BASE}/{request_id}/verify", json={"code": outbox.code(ALICE)},
                        headers=auth(token)).get_json()["status_token"]
    error = error_of(client.get(url, headers=auth(token)), 409, "export_not_ready")
    assert error["message"] == "Your data is not ready yet."


def test_an_expired_export_is_410(make_api: Callable[..., Flask], scripts: dict[str, Script],
                                  outbox: Outbox) -> None:
    scripts["crm"] = Script()
    scripts["crm"].seed(ALICE, 1)
    app = make_api({"crm": {"type": "scripted", "script": "crm"}})
    client, rt = app.test_client(), app.extensions["dsar"]
    request_id, token = submit(client)
    token = client.post(f"{BASE}/{request_id}/verify", json={"code": outbox.code(ALICE)},
                        headers=auth(token)).get_json()["status_token"]
    process(rt)
    with rt.transaction() as session:
        session.execute(update(ExportBundle).where(ExportBundle.request_id == request_id)
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    shown = client.get(f"{BASE}/{request_id}", headers=auth(token)).get_json()
    assert shown["export"]["available"] is False and shown["export"]["downloads_left"] == 3
    error = error_of(client.get(f"{BASE}/{request_id}/export", headers=auth(token)), 410,
                     "export_expired")
    assert error["message"] == rt.texts["download.expired"]


def test_an_unexpected_error_is_a_bare_json_500(client: FlaskClient, outbox: Outbox,
                                                monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    request_id, token = submit(client)

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError(f"row for {ALICE} with token {token}")

    monkeypatch.setattr("dsar.workflow.verification.find_token", broken)
    caplog.set_level(logging.DEBUG)
    response = client.get(f"{BASE}/{request_id}", headers=auth(token))
    error = error_of(response, 500, "internal_error")
    assert ALICE not in response.get_data(as_text=True) and "RuntimeError" not in error["message"]
    logged = [r for r in caplog.records if r.name == "dsar.api.errors"]
    assert len(logged) == 1 and "RuntimeError" in logged[0].getMessage()
    assert "api.status" in logged[0].getMessage()
    for record in caplog.records:
        assert ALICE not in record.getMessage() and token not in record.getMessage()
        assert record.exc_info is None


def test_options_needs_no_token(client: FlaskClient, outbox: Outbox) -> None:
    request_id, _token = submit(client)
    response = client.options(f"{BASE}/{request_id}/verify")
    assert response.status_code == 200
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}


def test_every_answer_is_no_store(client: FlaskClient, api_rt: Runtime, outbox: Outbox) -> None:
    request_id, token = submit(client)
    for response in (client.get(f"{BASE}/{request_id}", headers=auth(token)),
                     client.options(f"{BASE}/{request_id}"),
                     client.get(f"{BASE}/{request_id}"),
                     client.get("/api/v1/else")):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
