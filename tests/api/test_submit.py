"""POST /api/v1/requests: what is accepted, and that every bad body gets a
clear 4xx JSON answer naming the problem and writes nothing."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dsar.runtime import Runtime
from tests.api.helpers import ALICE, BASE, Outbox, auth, counts, error_of

GOOD = {"kind": "access", "email": ALICE}


def test_a_submission_answers_202_with_a_token_shown_once(client: FlaskClient,
                                                          outbox: Outbox) -> None:
    response = client.post(BASE, json={**GOOD, "name": "A" * 200, "message": "m" * 5000})
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "verifying" and len(body["status_token"]) >= 40
    assert len(outbox.unread(ALICE)) == 1
    shown = client.get(f"{BASE}/{body['id']}", headers=auth(body["status_token"]))
    assert "status_token" not in shown.get_json()


def test_charset_parameter_is_fine(client: FlaskClient) -> None:
    response = client.post(BASE, data=json.dumps(GOOD),
                           content_type="application/json; charset=utf-8")
    assert response.status_code == 202


# (description, request arguments, status, error code, the field named or None)
BAD: list[tuple[str, dict[str, Any], int, str, str | None]] = [
    ("kind is a number", {"json": {**GOOD, "kind": 5}}, 400, "invalid_fields", "kind"),
    ("email is a list", {"json": {**GOOD, "email": []}}, 400, "invalid_fields", "email"),
    ("email is an object", {"json": {**GOOD, "email": {"a": 1}}}, 400, "invalid_fields",
     "email"),
    ("email is null", {"json": {**GOOD, "email": None}}, 400, "invalid_fields", "email"),
    ("email is not an address", {"json": {**GOOD, "email": "alice"}}, 400, "invalid_fields",
     "email"),
    ("email is blank", {"json": {**GOOD, "email": "   "}}, 400, "invalid_fields", "email"),
    ("email is too long", {"json": {**GOOD, "email": "a" * 250 + "@example.org"}}, 400,
     "invalid_fields", "email"),
    ("name too long", {"json": {**GOOD, "name": "n" * 201}}, 400, "invalid_fields", "name"),
    ("name is a number", {"json": {**GOOD, "name": 7}}, 400, "invalid_fields", "name"),
    ("message too long", {"json": {**GOOD, "message": "m" * 5001}}, 400, "invalid_fields",
     "message"),
    ("message is a list", {"json": {**GOOD, "message": ["x"]}}, 400, "invalid_fields",
     "message"),
    ("unknown kind", {"json": {**GOOD, "kind": "rectification"}}, 400, "invalid_fields",
     "kind"),
    ("kind in capitals", {"json": {**GOOD, "kind": "ACCESS"}}, 400, "invalid_fields", "kind"),
    ("unknown field", {"json": {**GOOD, "colour": "red"}}, 400, "invalid_fields", "colour"),
    ("phone is not taken here", {"json": {**GOOD, "phone": "+44 20 7946 0000"}}, 400,
     "invalid_fields", "phone"),
    ("customer_id is not taken here", {"json": {**GOOD, "customer_id": "C-1"}}, 400,
     "invalid_fields", "customer_id"),
    ("kind missing", {"json": {"email": ALICE}}, 400, "invalid_fields", "kind"),
    ("email missing", {"json": {"kind": "access"}}, 400, "invalid_fields", "email"),
    ("empty object", {"json": {}}, 400, "invalid_fields", "kind"),
    ("NUL in the name", {"json": {**GOOD, "name": "a\x00b"}}, 400, "invalid_fields", "name"),
    ("lone surrogate in the message", {"data": '{"kind": "access", "email": "alice@example.org",'
                                               ' "message": "\\ud800"}',
                                       "content_type": "application/json"}, 400,
     "invalid_fields", "message"),
    ("lone surrogate in the email", {"data": '{"kind": "access",'
                                             ' "email": "ann\\ud800@example.org"}',
                                     "content_type": "application/json"}, 400,
     "invalid_fields", "email"),
    ("malformed JSON", {"data": '{"kind": "access",', "content_type": "application/json"},
     400, "invalid_json", None),
    ("single quotes", {"data": "{'kind': 'access'}", "content_type": "application/json"}, 400,
     "invalid_json", None),
    ("not UTF-8", {"data": b'{"kind": "\xff\xfe"}', "content_type": "application/json"}, 400,
     "invalid_json", None),
    ("deeply nested", {"data": "[" * 30_000 + "]" * 30_000, "content_type": "application/json"},
     400, "invalid_json", None),
    ("a JSON array", {"json": [GOOD]}, 400, "not_an_object", None),
    ("a JSON string", {"json": "access"}, 400, "not_an_object", None),
    ("JSON null", {"data": "null", "content_type": "application/json"}, 400, "not_an_object",
     None),
    ("a JSON number", {"data": "42", "content_type": "application/json"}, 400,
     "not_an_object", None),
    ("empty body", {}, 400, "empty_body", None),
    ("empty JSON body", {"data": "", "content_type": "application/json"}, 400, "empty_body",
     None),
    ("form-encoded", {"data": GOOD}, 415, "unsupported_media_type", None),
    ("text/plain", {"data": json.dumps(GOOD), "content_type": "text/plain"}, 415,
     "unsupported_media_type", None),
    ("no content type", {"data": json.dumps(GOOD)}, 415, "unsupported_media_type", None),
    ("too large", {"json": {**GOOD, "message": "m" * 70_000}}, 413, "body_too_large", None),
]


@pytest.mark.parametrize("size", [60_000, 64 * 1024, 64 * 1024 + 1])
def test_a_chunked_body_is_held_to_the_same_limit(client: FlaskClient, api_rt: Runtime,
                                                  outbox: Outbox, size: int) -> None:
    """No Content-Length: the limit applies to what is read (a server that ends
    the chunked input, as gunicorn and werkzeug's do, says so in
    wsgi.input_terminated); past it a 413, never a body cut short. ``size``: the
    body's bytes."""
    shell = len(json.dumps({**GOOD, "message": ""}).encode())
    body = json.dumps({**GOOD, "message": "m" * (size - shell)}).encode()
    assert len(body) == size
    before = counts(api_rt)
    answer = client.post(BASE, input_stream=io.BytesIO(body), content_type="application/json",
                         headers={"Transfer-Encoding": "chunked"},
                         environ_overrides={"wsgi.input_terminated": True})
    if size <= 64 * 1024:
        assert answer.status_code == 400 and answer.json is not None
        assert answer.json["error"]["fields"].keys() == {"message"}  # read whole: too long
    else:
        error_of(answer, 413, "body_too_large")
        assert counts(api_rt) == before


@pytest.mark.parametrize(("kwargs", "status", "code", "field"),
                         [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_input_is_refused_naming_the_field(client: FlaskClient, api_rt: Runtime,
                                               outbox: Outbox, kwargs: dict[str, Any],
                                               status: int, code: str,
                                               field: str | None) -> None:
    before = counts(api_rt)
    error = error_of(client.post(BASE, **kwargs), status, code)
    if field is not None:
        assert field in error["fields"], error
        assert field in error["message"], error
        assert all(isinstance(m, str) and m for m in error["fields"][field])
    assert counts(api_rt) == before
    assert outbox.unread(ALICE) == []


def test_every_bad_body_gets_a_json_4xx(api: Flask, api_rt: Runtime) -> None:
    """Property-style: one app, every bad body in a row, nothing written."""
    client = api.test_client()
    before = counts(api_rt)
    for description, kwargs, _status, _code, _field in BAD:
        response = client.post(BASE, **kwargs)
        assert 400 <= response.status_code < 500, description
        body = response.get_json(silent=True)
        assert isinstance(body, dict) and set(body) == {"error"}, description
        assert body["error"]["code"] and body["error"]["message"], description
    assert counts(api_rt) == before


def test_every_kind_of_wrong_field_type(client: FlaskClient, api_rt: Runtime) -> None:
    """Each field with each JSON type it must not be."""
    before = counts(api_rt)
    wrong_values: list[Any] = [5, 1.5, True, [], ["x"], {}, {"a": "b"}]
    for field in ("kind", "email", "name", "message"):
        for value in wrong_values:
            error = error_of(client.post(BASE, json={**GOOD, field: value}), 400,
                             "invalid_fields")
            assert list(error["fields"]) == [field], (field, value, error)
    assert counts(api_rt) == before


def test_name_and_message_may_be_absent_or_null(client: FlaskClient) -> None:
    assert client.post(BASE, json={**GOOD, "name": None, "message": None}).status_code == 202
    assert client.post(BASE, json={**GOOD, "kind": "erasure"}).status_code == 202
