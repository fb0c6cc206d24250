"""The request form: rendering, CSRF, validation, mail server down, headers, enumeration."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from dsar.demo import seed
from dsar.models import OutboxMail
from dsar.outbox import deliver_due
from dsar.texts import DEFAULTS as T
from dsar.workflow import verification
from tests.portal.journey import ALICE, Browser, Outbox, count


def test_form_renders_with_csrf_token_labels_and_hints(browser: Browser) -> None:
    page = browser.client.get("/")
    assert page.status_code == 200
    html = page.text
    assert '<html lang="en">' in html and 'href="#main"' in html and 'id="main"' in html
    assert re.search(r'name="csrf_token" value="[^"]{20,}"', html)
    for field in ("kind-access", "kind-erasure", "email", "name", "message"):
        assert f'<label for="{field}">' in html, field
        assert f'aria-describedby="{field}-hint' in html, field
    assert T["form.kind.access.hint"] in html and T["form.kind.erasure.hint"] in html
    assert "<script" not in html and "http://" not in html and "https://" not in html
    css = browser.client.get("/static/portal/portal.css")
    assert css.status_code == 200 and "text/css" in css.headers["Content-Type"]
    css.close()


def test_texts_come_from_config(portal_app: Callable[..., Flask], tmp_path: Path) -> None:
    texts = tmp_path / "texts.toml"
    texts.write_text('[texts]\n"form.title" = "Ihre Daten"\n"portal.lang" = "de"\n')
    page = Browser(portal_app(TEXTS=str(texts))).client.get("/")
    assert '<html lang="de">' in page.text and "<h1>Ihre Daten</h1>" in page.text


def test_post_without_csrf_is_refused_and_writes_nothing(browser: Browser) -> None:
    answer = browser.client.post("/requests", data={"kind": "access", "email": ALICE})
    assert answer.status_code == 400
    assert T["error.csrf.title"] in answer.text
    forged = browser.client.post("/requests", data={"kind": "access", "email": ALICE,
                                                    "csrf_token": "forged"})
    assert forged.status_code == 400
    assert count(browser.rt) == 0 and browser.outbox.new() == []


@pytest.mark.parametrize(("fields", "field", "text"), [
    ({"name": "x" * 201}, "name", T["form.name.too_long"]),
    ({"message": "y" * 5001}, "message", T["form.message.too_long"]),
    ({"email_": "not-an-address"}, "email", T["form.email.invalid"]),
    ({"email_": ""}, "email", T["form.email.missing"]),
    ({"email_": None}, "email", T["form.email.missing"]),
    ({"kind": "portability"}, "kind", T["form.kind.invalid"]),
    ({"kind": None}, "kind", T["form.kind.missing"]),
], ids=["name-201", "message-5001", "bad-email", "empty-email", "no-email", "unknown-kind",
        "no-kind"])
def test_invalid_fields_get_their_message_and_write_nothing(
        browser: Browser, fields: dict[str, str | None], field: str, text: str) -> None:
    answer = browser.submit(**fields)  # type: ignore[arg-type]
    assert answer.status_code == 400
    html = answer.text
    anchor = "kind-access" if field == "kind" else field
    assert f'<li><a href="#{anchor}">{text}</a></li>' in html  # the error summary
    assert f'<p id="{field}-error" class="field-error">' in html and text in html
    if field != "kind":
        assert re.search(rf'id="{field}"[^>]*aria-describedby="{field}-hint {field}-error"',
                         html, re.S)
    assert html.count(text) == 2 and "<title>Error: " in html
    assert count(browser.rt) == 0 and browser.outbox.new() == []


def test_limits_are_inclusive_and_values_are_kept(browser: Browser) -> None:
    bad = browser.submit("erasure", "not-an-address", name="Ann <Lee>", message="m" * 5000)
    assert bad.status_code == 400
    assert 'value="not-an-address"' in bad.text and 'value="Ann &lt;Lee&gt;"' in bad.text
    assert re.search(r'value="erasure"\s+aria-describedby="kind-erasure-hint" checked', bad.text)
    assert "m" * 5000 + "</textarea>" in bad.text
    good = browser.submit("access", ALICE, name="n" * 200, message="m" * 5000,
                          phone="+44 1", customer_id="c-1", unknown="ignored")
    assert good.status_code == 303
    assert count(browser.rt) == 1


def test_oversized_body_gets_a_413_page(browser: Browser) -> None:
    answer = browser.submit(message="z" * 70_000)
    assert answer.status_code == 413 and T["error.413.title"] in answer.text
    assert count(browser.rt) == 0


def test_a_mail_server_down_still_takes_the_request_and_queues_the_code(
        portal_app: Callable[..., Flask]) -> None:
    """Issue 10: the code waits in the outbox; the submission neither fails nor waits."""
    browser = Browser(portal_app(SMTP_URL="smtp://127.0.0.1:1"))  # a real refused connection
    answer = browser.submit()
    assert answer.status_code == 303
    assert T["status.verifying"] in browser.client.get(answer.headers["Location"]).text
    assert count(browser.rt, status="verifying") == 1
    assert deliver_due(browser.rt) == 0  # refused: tried again later
    assert count(browser.rt, OutboxMail, status="pending", attempts=1) == 1


def test_security_headers(browser: Browser) -> None:
    request_id = browser.start()
    for answer in (browser.client.get("/"), browser.status(request_id),
                   browser.client.get("/requests/nope"), browser.client.get("/no/such/page")):
        headers = answer.headers
        assert headers["Content-Security-Policy"].startswith(
            "default-src 'self'; frame-ancestors 'none'")
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["Cache-Control"] == "no-store"
    cookie = browser.client.get_cookie("session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"


def test_https_form_posts_pass_the_referrer_check(portal_app: Callable[..., Flask]) -> None:
    """Why the Referrer-Policy is same-origin, not no-referrer: over HTTPS,
    Flask-WTF refuses a form POST that carries no Referer."""
    client, https = portal_app().test_client(), "https://localhost"
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/", base_url=https).text)
    assert found
    data = {"csrf_token": found.group(1), "kind": "access", "email": ALICE}
    blind = client.post("/requests", data=data, base_url=https)
    assert blind.status_code == 400  # what no-referrer would do to every form
    same_site = client.post("/requests", data=data, base_url=https,
                            headers={"Referer": "https://localhost/"})
    assert same_site.status_code == 303


def test_unknown_address_gets_the_same_answer_as_a_known_one(
        portal_app: Callable[..., Flask], tmp_path: Path) -> None:
    """Nothing on the submit path looks the address up: same status, same page
    (but for the request id), a mail either way."""
    demo = seed(tmp_path / "instance", customers=2)
    app = portal_app(CONNECTORS=str(demo.connector_file))
    pages, outbox = [], Outbox(Path(app.config["OUTBOX_DIR"]), app.extensions["dsar"])
    for address in (demo.emails[0], "nobody.at.all@example.net"):
        browser = Browser(app)
        answer = browser.submit("access", address)
        assert answer.status_code == 303
        request_id = answer.headers["Location"].rsplit("/", 1)[1]
        assert answer.headers["Location"] == f"/requests/{request_id}"
        page = browser.status(request_id)
        assert page.status_code == 200
        pages.append(re.sub(r'name="csrf_token" value="[^"]+"', "CSRF",  # signed per second
                            page.text.replace(request_id, "ID")))
        assert [m["To"] for m in outbox.new()] == [address]
    assert pages[0] == pages[1]


def test_unexpected_error_is_a_friendly_500_and_logged(
        portal_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    app = portal_app()
    app.config["TESTING"] = False  # as in production: handled, not propagated

    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the database exploded")

    monkeypatch.setattr(verification, "find_token", explode)
    answer = Browser(app).client.get(f"/requests/{'a' * 32}")
    assert answer.status_code == 500 and T["error.500.title"] in answer.text
    assert "exploded" not in answer.text and "Traceback" not in answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    assert any(r.exc_info and "exploded" in str(r.exc_info[1]) for r in caplog.records)


def test_a_lone_surrogate_sent_as_json_is_a_400_page(browser: Browser) -> None:
    """JSON is the one body that decodes to a lone surrogate (``"\\ud800"``);
    the per-address rate-limit key reads it before the form is checked."""
    answer = browser.client.post(
        "/requests", data='{"kind": "access", "email": "ann\\ud800@example.org"}',
        content_type="application/json", headers={"X-CSRFToken": browser.csrf()})
    assert answer.status_code == 400 and T["form.email.missing"] in answer.text
    assert count(browser.rt) == 0
