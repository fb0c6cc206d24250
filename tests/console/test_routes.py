"""Roles on every console route: a table of who may use what, checked
against the application's URL map, so a new route without a declared role
(or with other roles than the table says) fails the suite."""

from __future__ import annotations

import pytest
from flask import Flask

from dsar.console.access import declared_roles
from tests.console.client import Console

A, R, U = "admin", "reviewer", "auditor"
#: endpoint -> the roles that may use it (empty: anyone, signed in or not)
ROLES: dict[str, set[str]] = {
    "console.sign_in": set(),
    "console.setup": set(),
    "console.sign_out": {A, R, U},
    "console.queue": {A, R, U},
    "console.search": {A, R, U},
    "console.dashboard": {A, R, U},
    "console.request_page": {A, R, U},
    "console.trail_page": {A, R, U},
    "console.ask_check": {A, R, U},
    "console.export_trail": {A, R, U},
    "console.preview_again": {A, R},
    "console.officers": {A},
    "console.officer_new": {A},
    "console.officer": {A},
    "console.officer_role": {A},
    "console.officer_disable": {A},
    "console.officer_invite": {A},
    "console.connectors": {A},
    "console.officer_reset": {A},
    "console.account": {A, R, U},
    "console.account_password": {A, R, U},
    "console.account_recovery_codes": {A, R, U},
    "console.account_mail": {A, R, U},
    # an officer's actions on a request: the form (and its check), the confirmation
    "console.approve": {A, R}, "console.approve_confirm": {A, R},
    "console.deny": {A, R}, "console.deny_confirm": {A, R},
    "console.extend": {A, R}, "console.extend_confirm": {A, R},
    "console.pause": {A, R}, "console.pause_confirm": {A, R},
    "console.resume": {A, R}, "console.resume_confirm": {A, R},
    "console.retry": {A, R}, "console.retry_confirm": {A, R},
    "console.cancel": {A, R}, "console.cancel_confirm": {A, R},
}
#: values for the URL's variables
ARGS = {"token": "x" * 43, "request_id": "0" * 32, "officer_id": "0" * 16}


def console_routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, path) of every console route but its static files."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("console.") or rule.endpoint == "console.static":
            continue
        path = rule.build({name: ARGS[name] for name in rule.arguments})[1]  # type: ignore[index]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((rule.endpoint, method, path))
    return routes


def test_every_console_route_declares_its_roles_as_the_table_says(console_app: Flask) -> None:
    endpoints = {endpoint for endpoint, _, _ in console_routes(console_app)}
    assert endpoints == set(ROLES), "a console route was added or removed: update ROLES"
    for endpoint in endpoints:
        declared = declared_roles(console_app.view_functions[endpoint])
        assert declared is not None, f"{endpoint} declares no roles"
        assert {str(r) for r in declared} == ROLES[endpoint], endpoint


@pytest.mark.parametrize("role", [None, A, R, U])
def test_each_role_gets_exactly_the_routes_it_may_use(console_app: Flask,
                                                      role: str | None) -> None:
    console = Console(console_app)
    if role is not None:
        console.officer(f"{role}@example.org", role)
    for endpoint, method, path in console_routes(console_app):
        if endpoint == "console.sign_out":
            continue  # it would end the session: below
        answer = (console.client.get(path) if method == "GET"
                  else console.post(path))
        allowed = ROLES[endpoint]
        if not allowed:
            assert answer.status_code not in (303, 403), (endpoint, method, answer.status_code)
        elif role is None:
            assert answer.status_code == 303, (endpoint, method)
            assert answer.headers["Location"].startswith("/console/sign-in")
        elif role in allowed:
            assert answer.status_code not in (303, 403), (endpoint, method, answer.status_code)
        else:
            assert answer.status_code == 403, (endpoint, method, answer.status_code)
    out = console.post("/console/sign-out")
    assert out.status_code == 303
    expected = "/console/sign-in" if role is not None else "/console/sign-in?next=/console/"
    assert out.headers["Location"] == expected


def test_a_route_that_declares_no_roles_is_refused(console_app: Flask) -> None:
    console_app.add_url_rule("/console/forgotten", "console.forgotten", lambda: "open")
    console_app.config["TESTING"] = False  # the error page, not the exception
    answer = console_app.test_client().get("/console/forgotten")
    assert answer.status_code == 500 and "open" not in answer.text


def test_every_console_answer_is_no_store_under_a_strict_csp(console: Console) -> None:
    for path in ("/console/sign-in", "/console/", "/console/setup/unknown", "/console/nowhere"):
        answer = console.client.get(path)
        assert answer.headers["Cache-Control"] == "no-store", path
        csp = answer.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp, path
        assert answer.headers["X-Frame-Options"] == "DENY"
    nowhere = console.client.get("/console/nowhere")
    assert nowhere.status_code == 404 and "dsar console" in nowhere.text
