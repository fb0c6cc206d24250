"""The API end to end, on SQLite and PostgreSQL: access from submission to the
zip, erasure to review, a wrong code's attempt committed, a mail server down.
No address, code or token reaches a log record on the way."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from dsar.models import AuditEvent, OutboxMail, Verification
from dsar.texts import say
from tests.api.helpers import ALICE, BASE, BOB, Outbox, auth, counts, error_of, process, submit
from tests.support.engine_connectors import Script


@pytest.fixture
def secrets_seen() -> list[str]:
    """Values that must never reach a log line: tests append to it."""
    return [ALICE, BOB]


@pytest.fixture(autouse=True)
def no_secrets_in_logs(caplog: pytest.LogCaptureFixture,
                       secrets_seen: list[str]) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in records)
    assert records, "expected the journey to log something"
    for secret in secrets_seen:
        assert secret.lower() not in text.lower(), f"{secret!r} reached a log record"


def two_stores(scripts: dict[str, Script]) -> dict[str, dict[str, Any]]:
    for name in ("crm", "mail"):
        scripts[name] = Script()
        scripts[name].seed(ALICE, 2)
        scripts[name].seed(BOB, 1)
    return {"crm": {"type": "scripted", "script": "crm"},
            "mail": {"type": "scripted", "script": "mail"}}


def unzip(data: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    return json.loads(files.pop("manifest.json")), files


def test_access_from_submission_to_download(make_api: Callable[..., Flask],
                                             scripts: dict[str, Script], outbox: Outbox,
                                             secrets_seen: list[str]) -> None:
    app = make_api(two_stores(scripts), EXPORT_MAX_DOWNLOADS=2)
    rt, client = app.extensions["dsar"], app.test_client()

    response = client.post(BASE, json={"kind": "access", "email": ALICE, "name": "Alice"})
    assert response.status_code == 202
    body = response.get_json()
    assert set(body) == {"id", "status", "due_at", "status_token"}
    assert body["status"] == "verifying" and body["due_at"].endswith("+00:00")
    assert response.headers["Location"] == f"{BASE}/{body['id']}"
    assert response.headers["Cache-Control"] == "no-store"
    request_id, token = body["id"], body["status_token"]
    code = outbox.code(ALICE)
    secrets_seen += [token, code]

    shown = client.get(f"{BASE}/{request_id}", headers=auth(token)).get_json()
    assert shown["status"] == "verifying" and shown["export"] is None
    assert "status_token" not in shown and token not in json.dumps(shown)

    verified = client.post(f"{BASE}/{request_id}/verify", json={"code": code},
                           headers=auth(token))
    assert verified.status_code == 200, verified.get_json()
    assert verified.get_json()["status"] == "processing"
    # the token used before verification stops working: the verifier has a new one
    error_of(client.get(f"{BASE}/{request_id}", headers=auth(token)), 404, "not_found")
    token = verified.get_json()["status_token"]
    secrets_seen.append(token)
    assert {p["store"] for p in verified.get_json()["progress"]} == {"crm", "mail"}

    process(rt)
    shown = client.get(f"{BASE}/{request_id}", headers=auth(token)).get_json()
    assert shown["status"] == "completed"
    assert {p["state"] for p in shown["progress"]} == {"done"}
    assert shown["export"]["available"] is True and shown["export"]["downloads_left"] == 2
    assert shown["export"]["url"] == f"{BASE}/{request_id}/export"

    with client.get(f"{BASE}/{request_id}/export", headers=auth(token)) as download:
        assert download.status_code == 200 and download.mimetype == "application/zip"
        assert download.headers["Cache-Control"] == "no-store"
        assert "attachment" in download.headers["Content-Disposition"]
        manifest, files = unzip(download.get_data())
    assert manifest["request"]["id"] == request_id
    assert {c["name"]: c["records"] for c in manifest["connectors"]} == {"crm": 2, "mail": 2}
    for entry in manifest["files"]:
        assert hashlib.sha256(files[entry["name"]]).hexdigest() == entry["sha256"]
    assert BOB not in b"".join(files.values()).decode()

    shown = client.get(f"{BASE}/{request_id}", headers=auth(token)).get_json()
    assert shown["export"]["downloads_left"] == 1
    with client.get(f"{BASE}/{request_id}/export", headers=auth(token)) as second:
        assert second.status_code == 200
    shown = client.get(f"{BASE}/{request_id}", headers=auth(token)).get_json()
    assert shown["export"] == {**shown["export"], "available": False, "downloads_left": 0}

    refused = client.get(f"{BASE}/{request_id}/export", headers=auth(token))
    error = error_of(refused, 410, "export_exhausted")
    assert error["message"] == rt.texts["download.exhausted"]
    with rt.transaction() as session:
        downloads = session.scalars(select(AuditEvent.action).where(
            AuditEvent.request_id == request_id,
            AuditEvent.action == "export.downloaded")).all()
    assert len(downloads) == 2


def test_erasure_waits_for_review(make_api: Callable[..., Flask], scripts: dict[str, Script],
                                  outbox: Outbox, secrets_seen: list[str]) -> None:
    client = make_api(two_stores(scripts)).test_client()
    request_id, token = submit(client, "erasure")
    code = outbox.code(ALICE)
    secrets_seen += [token, code]
    verified = client.post(f"{BASE}/{request_id}/verify", json={"code": code},
                           headers=auth(token))
    assert verified.status_code == 200
    assert verified.get_json()["status"] == "awaiting_review"
    token = verified.get_json()["status_token"]
    secrets_seen.append(token)
    shown = client.get(f"{BASE}/{request_id}", headers=auth(token)).get_json()
    assert (shown["kind"], shown["status"], shown["export"]) == ("erasure", "awaiting_review",
                                                                 None)
    assert shown["progress"] == []
    error_of(client.get(f"{BASE}/{request_id}/export", headers=auth(token)), 409, "no_export")


def test_wrong_codes_are_counted_and_committed(make_api: Callable[..., Flask], outbox: Outbox,
                                               secrets_seen: list[str]) -> None:
    app = make_api()
    rt, client = app.extensions["dsar"], app.test_client()
    request_id, token = submit(client)
    code = outbox.code(ALICE)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    secrets_seen += [token, code]
    for left in (4, 3, 2, 1):
        response = client.post(f"{BASE}/{request_id}/verify", json={"code": wrong},
                               headers=auth(token))
        error = error_of(response, 400, "wrong_code")
        assert error["attempts_left"] == left
        assert error["message"] == say(rt.texts, "verify.wrong_code", left=left)
        with rt.transaction() as session:  # committed although the answer is an error
            row = session.get(Verification, request_id)
            assert row is not None and row.attempts == 5 - left
    assert error["message"] == "That code is not right. 1 attempt left."  # one, singular
    fifth = client.post(f"{BASE}/{request_id}/verify", json={"code": wrong}, headers=auth(token))
    assert error_of(fifth, 410, "too_many_attempts")["message"] == rt.texts["verify.too_many"]
    right = client.post(f"{BASE}/{request_id}/verify", json={"code": code}, headers=auth(token))
    error_of(right, 410, "too_many_attempts")
    with rt.transaction() as session:
        failed = session.scalars(select(AuditEvent.action).where(
            AuditEvent.request_id == request_id,
            AuditEvent.action == "verification.failed")).all()
    assert len(failed) == 5
    assert client.get(f"{BASE}/{request_id}", headers=auth(token)).get_json()["status"] == (
        "verifying")


def test_mail_server_down_still_takes_the_request_and_queues_the_code(
        make_api: Callable[..., Flask], outbox: Outbox) -> None:
    """Issue 10: the code waits in the outbox; the submission neither fails nor waits."""
    app = make_api(SMTP_URL="smtp://127.0.0.1:1")  # a real refused connection
    rt, client = app.extensions["dsar"], app.test_client()
    requests, events = counts(rt)
    request_id, token = submit(client)  # 202
    assert client.get(f"{BASE}/{request_id}", headers=auth(token)).get_json()["status"] == (
        "verifying")
    assert counts(rt)[0] == requests + 1 and counts(rt)[1] > events
    assert outbox.unread(ALICE) == []  # delivery was tried: refused, so nothing sent yet
    with rt.transaction() as session:
        [queued] = session.scalars(select(OutboxMail)).all()
        assert (queued.status, queued.attempts, queued.request_id) == ("pending", 1, request_id)
