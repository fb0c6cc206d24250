"""Codes over the API: expiry, the wrong state, the format, resend and its cooldown."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update
from werkzeug.test import TestResponse

from dsar.clock import MovableClock
from dsar.database import utcnow
from dsar.models import Verification
from dsar.runtime import Runtime
from dsar.texts import duration, say
from tests.api.helpers import ALICE, BASE, Outbox, auth, counts, error_of, submit


def verify(client: FlaskClient, request_id: str, token: str, code: str) -> TestResponse:
    return client.post(f"{BASE}/{request_id}/verify", json={"code": code}, headers=auth(token))


def test_an_expired_code_is_410(client: FlaskClient, api_rt: Runtime, outbox: Outbox) -> None:
    request_id, token = submit(client)
    with api_rt.transaction() as session:
        session.execute(update(Verification).where(Verification.request_id == request_id)
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    error = error_of(verify(client, request_id, token, outbox.code(ALICE)), 410, "code_expired")
    assert error["message"] == api_rt.texts["verify.expired"]


def test_verify_after_verified_is_409(client: FlaskClient, api_rt: Runtime,
                                      outbox: Outbox) -> None:
    request_id, token = submit(client)
    code = outbox.code(ALICE)
    verified = verify(client, request_id, token, code)
    assert verified.status_code == 200
    error_of(verify(client, request_id, token, code), 404, "not_found")  # the old token
    token = verified.get_json()["status_token"]
    error = error_of(verify(client, request_id, token, code), 409, "not_waiting")
    assert error["message"] == api_rt.texts["verify.not_waiting"]
    error_of(client.post(f"{BASE}/{request_id}/resend", headers=auth(token)), 409, "not_waiting")


@pytest.mark.parametrize("code", ["12345", "1234567", "abcdef", "12 34 56", ""])
def test_a_code_of_the_wrong_shape_is_400_and_not_counted(client: FlaskClient, api_rt: Runtime,
                                                          outbox: Outbox, code: str) -> None:
    request_id, token = submit(client)
    before = counts(api_rt)
    error = error_of(verify(client, request_id, token, code), 400, "invalid_fields")
    assert list(error["fields"]) == ["code"]
    assert counts(api_rt) == before


@pytest.mark.parametrize("body", [None, {}, {"code": 123456}, {"code": None},
                                  {"code": "123456", "extra": 1}])
def test_verify_body_is_checked(client: FlaskClient, api_rt: Runtime, outbox: Outbox,
                                body: object) -> None:
    request_id, token = submit(client)
    before = counts(api_rt)
    response = client.post(f"{BASE}/{request_id}/verify", json=body, headers=auth(token))
    error = error_of(response, 400)
    assert error["code"] in {"empty_body", "invalid_fields"}
    assert counts(api_rt) == before


def test_a_code_with_spaces_around_is_accepted(client: FlaskClient, outbox: Outbox) -> None:
    request_id, token = submit(client)
    response = verify(client, request_id, token, f" {outbox.code(ALICE)} ")
    assert response.status_code == 200


def test_resend_too_soon_is_429_with_retry_after(make_api: Callable[..., Flask],
                                                 outbox: Outbox) -> None:
    # an hourly limit: its window's reset must not replace the cooldown's Retry-After
    app = make_api(RATE_LIMIT_RESEND="100 per hour")
    client, api_rt = app.test_client(), app.extensions["dsar"]
    request_id, token = submit(client)
    outbox.code(ALICE)
    before = counts(api_rt)
    response = client.post(f"{BASE}/{request_id}/resend", headers=auth(token))
    error = error_of(response, 429, "resend_too_soon")
    seconds = int(response.headers["Retry-After"])
    assert 0 < seconds <= 60 and error["retry_after"] == seconds
    assert error["message"] == say(api_rt.texts, "resend.cooldown", seconds=seconds)
    assert error["message"].endswith(f"ask again in {duration(api_rt.texts, seconds)}.")
    assert counts(api_rt) == before and outbox.unread(ALICE) == []


def test_after_the_cooldown_a_new_code_replaces_the_old(make_api: Callable[..., Flask],
                                                        outbox: Outbox) -> None:
    app = make_api()
    client, rt = app.test_client(), app.extensions["dsar"]
    clock = rt.clock = MovableClock()
    request_id, token = submit(client)
    old = outbox.code(ALICE)
    clock.advance(seconds=61)  # past the resend cooldown
    response = client.post(f"{BASE}/{request_id}/resend", headers=auth(token))
    assert response.status_code == 202, response.get_json()
    assert response.get_json() == {"id": request_id, "status": "verifying",
                                   "message": rt.texts["resend.sent"]}
    new = outbox.code(ALICE)
    if new != old:  # one chance in a million that the new code is the old one
        error_of(verify(client, request_id, token, old), 400, "wrong_code")
    assert verify(client, request_id, token, new).status_code == 200


@pytest.mark.parametrize(("kwargs", "status"), [
    ({"json": {}}, 202), ({"json": {"force": True}}, 400), ({"json": [1]}, 400),
    ({"data": "x=1", "content_type": "application/x-www-form-urlencoded"}, 415)])
def test_resend_body_is_empty_or_an_empty_object(make_api: Callable[..., Flask], outbox: Outbox,
                                                 kwargs: dict[str, object], status: int) -> None:
    app = make_api()
    client = app.test_client()
    clock = app.extensions["dsar"].clock = MovableClock()
    request_id, token = submit(client)
    clock.advance(seconds=61)  # past the resend cooldown
    response = client.post(f"{BASE}/{request_id}/resend", headers=auth(token), **kwargs)
    assert response.status_code == status, response.get_json()
    if status != 202:
        error_of(response, status)
