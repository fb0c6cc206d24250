"""dsar/api/guards.py where `make mutate` found it loose: a 400 for several bad fields names
them all, sorted, in its message and in ``fields``; an unknown route is a 404 before any
body is read."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from tests.api.helpers import ALICE, BASE


def test_every_bad_field_is_named_sorted_in_the_message(make_app: Callable[..., Flask]) -> None:
    client = make_app(RATE_LIMIT_SUBMIT="1000 per minute").test_client()
    response = client.post(BASE, json={"kind": "access", "email": ALICE, "zeta": 1,
                                       "colour": "red", "name": 7})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_fields"
    assert error["message"] == "Some fields are not valid: colour, name, zeta."
    assert sorted(error["fields"]) == ["colour", "name", "zeta"]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_an_unknown_route_is_a_404_whatever_its_body(make_app: Callable[..., Flask],
                                                     method: str) -> None:
    client = make_app().test_client()
    response = client.open(f"{BASE}/no/such/thing", method=method, data="not json",
                           content_type="text/plain")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_a_method_no_route_takes_is_a_405_whatever_its_body(
        make_app: Callable[..., Flask], method: str) -> None:
    client = make_app().test_client()
    response = client.open(BASE, method=method, data="not json", content_type="text/plain")
    assert (response.status_code, response.get_json()["error"]["code"]) == \
        (405, "method_not_allowed")
