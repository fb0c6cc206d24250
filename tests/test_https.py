"""Over HTTPS, and in production by default, every cookie is ``Secure`` and
every answer carries ``Strict-Transport-Security``: the session cookie (it
holds the requester's status tokens) and the console's never travel in clear.

Behind a proxy that ends TLS, the app sees plain HTTP: ``DSAR_HTTPS`` says
what the public face is (on in production unless set off; otherwise on when
``BASE_URL`` is https).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from dsar.config import ConfigError, load_settings
from dsar.console import access
from tests.portal.journey import ALICE, Browser

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
PRODUCTION = {"ENV": "production", "SMTP_URL": "smtp://127.0.0.1:1"}
YEAR = 365 * 24 * 3600


def _answers(app: Flask) -> dict[str, Any]:
    """A portal form post (sets the session cookie), an API error, a console page."""
    browser = Browser(app)
    submitted = browser.submit("access", ALICE)
    assert submitted.status_code == 303
    return {"portal": submitted, "api": app.test_client().get("/api/v1/nowhere"),
            "console": app.test_client().get("/console/sign-in"),
            "static": app.test_client().get("/static/portal.css")}


def _session_cookie(answer: Any) -> str:
    (cookie,) = [v for v in answer.headers.getlist("Set-Cookie") if v.startswith("session=")]
    return str(cookie)


@SQLITE
@pytest.mark.parametrize("config", [PRODUCTION, {"BASE_URL": "https://privacy.example.com"},
                                    {"HTTPS": True}],
                         ids=["production", "https base url", "behind a TLS proxy"])
def test_secure_cookies_and_hsts(make_app: Callable[..., Flask], config: dict[str, Any],
                                 tmp_path: Any) -> None:
    app = make_app(OUTBOX_DIR=str(tmp_path / "outbox"), **config)
    answers = _answers(app)
    assert "; Secure" in _session_cookie(answers["portal"])
    for name, answer in answers.items():
        assert answer.headers.get("Strict-Transport-Security") == f"max-age={YEAR}", name


@SQLITE
def test_plain_http_in_development_sends_neither(make_app: Callable[..., Flask],
                                                 tmp_path: Any) -> None:
    app = make_app(OUTBOX_DIR=str(tmp_path / "outbox"))
    answers = _answers(app)
    assert "Secure" not in _session_cookie(answers["portal"])
    assert all("Strict-Transport-Security" not in a.headers for a in answers.values())


@SQLITE
def test_production_may_turn_it_off_and_hsts_may_be_shortened(
        make_app: Callable[..., Flask], tmp_path: Any) -> None:
    off = _answers(make_app(OUTBOX_DIR=str(tmp_path / "outbox"), HTTPS=False, **PRODUCTION))
    assert "Secure" not in _session_cookie(off["portal"])
    short = _answers(make_app(OUTBOX_DIR=str(tmp_path / "outbox"), HSTS_SECONDS=600,
                              **PRODUCTION))
    assert short["api"].headers["Strict-Transport-Security"] == "max-age=600"
    none = _answers(make_app(OUTBOX_DIR=str(tmp_path / "outbox"), HSTS_SECONDS=0,
                             **PRODUCTION))
    assert "Strict-Transport-Security" not in none["api"].headers
    assert "; Secure" in _session_cookie(none["portal"])


@SQLITE
@pytest.mark.parametrize(("config", "secure"), [(PRODUCTION, True), ({}, False)])
def test_the_console_cookie_is_secure_over_https(make_app: Callable[..., Flask],
                                                 config: dict[str, Any], secure: bool) -> None:
    app = make_app(**config)
    with app.test_request_context("/console/sign-in"):
        response = app.make_response("")
        access.remember(response, "token")
    assert ("; Secure" in response.headers["Set-Cookie"]) is secure


def test_the_settings_are_checked(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="DSAR_HTTPS"):
        load_settings({"DSAR_HTTPS": "maybe"}, None, str(tmp_path))
    with pytest.raises(ConfigError, match="DSAR_HSTS_SECONDS"):
        load_settings({"DSAR_HSTS_SECONDS": "-1"}, None, str(tmp_path))
