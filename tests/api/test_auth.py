"""The status token on every route: missing or malformed is 401 with a Bearer
challenge; a wrong token, another request's token or an unknown id is the same
404, and none of them reads or changes anything."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from dsar.models import Verification
from dsar.runtime import Runtime
from tests.api.helpers import ALICE, BASE, BOB, Outbox, counts, error_of, submit

# (method, path after /requests/<id>, JSON body)
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "", None),
    ("POST", "/verify", {"code": "123456"}),
    ("POST", "/resend", None),
    ("GET", "/export", None),
]
ROUTE_IDS = ["status", "verify", "resend", "export"]
MALFORMED = ["Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer ", "Bearer a b", "token abc",
             "Bearer abc\tdef", "Bearer " + "a" * 201, "Bearer ab\"cd", "Bearer <token>"]


def call(client: FlaskClient, route: tuple[str, str, Any], request_id: str,
         headers: dict[str, str] | None = None) -> Any:
    method, suffix, body = route
    return client.open(f"{BASE}/{request_id}{suffix}", method=method, json=body,
                       headers=headers or {})


@pytest.fixture
def two(client: FlaskClient, outbox: Outbox) -> dict[str, tuple[str, str]]:
    """Two live requests: Alice's and Bob's (id, token)."""
    return {"alice": submit(client, address=ALICE), "bob": submit(client, address=BOB)}


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_no_token_is_401_with_a_bearer_challenge(client: FlaskClient,
                                                 two: dict[str, tuple[str, str]],
                                                 route: tuple[str, str, Any]) -> None:
    response = call(client, route, two["alice"][0])
    error_of(response, 401, "token_missing")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_malformed_authorization_is_401(client: FlaskClient, two: dict[str, tuple[str, str]],
                                        route: tuple[str, str, Any]) -> None:
    for header in MALFORMED:
        response = call(client, route, two["alice"][0], {"Authorization": header})
        error_of(response, 401, "token_malformed")
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), header


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_wrong_foreign_and_unknown_are_the_same_404(client: FlaskClient, api_rt: Runtime,
                                                    two: dict[str, tuple[str, str]],
                                                    route: tuple[str, str, Any]) -> None:
    alice_id, alice_token = two["alice"]
    bob_id, bob_token = two["bob"]
    before = counts(api_rt)
    cases = {
        "wrong token": (alice_id, "x" * 43),
        "Bob's valid token on Alice's id": (alice_id, bob_token),
        "Alice's valid token on Bob's id": (bob_id, alice_token),
        "unknown id": ("0" * 32, alice_token),
        "id of another shape": ("not-an-id", alice_token),
        "id with a NUL": ("%00", alice_token),
        "very long id": ("a" * 300, alice_token),
    }
    bodies = set()
    for description, (request_id, token) in cases.items():
        response = call(client, route, request_id, {"Authorization": f"Bearer {token}"})
        error = error_of(response, 404, "not_found")
        bodies.add(response.get_data())
        assert "WWW-Authenticate" not in response.headers, description
        assert error["message"] == api_rt.texts["api.not_found"]
    assert len(bodies) == 1, "every refusal must look the same"
    assert counts(api_rt) == before
    with api_rt.transaction() as session:  # no attempt counted, no code resent
        rows = session.scalars(select(Verification)).all()
        assert [(r.attempts, r.sends) for r in rows] == [(0, 1), (0, 1)]


def test_the_scheme_is_case_insensitive(client: FlaskClient,
                                        two: dict[str, tuple[str, str]]) -> None:
    request_id, token = two["alice"]
    response = client.get(f"{BASE}/{request_id}", headers={"Authorization": f"bearer {token}"})
    assert response.status_code == 200
