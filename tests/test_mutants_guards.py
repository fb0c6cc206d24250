"""dsar/api/guards.py where `make mutate` found it loose: a 400 for several bad fields names
them all, sorted, in its message and in ``fields``."""

from __future__ import annotations

from collections.abc import Callable

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
