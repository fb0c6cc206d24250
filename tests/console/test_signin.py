"""Signing in to the console from a browser: set-up with both factors,
sign-in, the session cookie, sign-out, refusals that say nothing, throttling."""

from __future__ import annotations

import json
import re

from flask import Flask
from sqlalchemy import select

from dsar.models import AuditEvent, Officer
from tests.console.client import PASSWORD, Console

CSRF = re.compile(r'name="csrf_token" value="[^"]*"')

def trail(console: Console) -> list[tuple[str, str, dict[str, object]]]:
    with console.rt.transaction() as session:
        return [(e.action, e.actor, json.loads(e.details)) for e in session.scalars(
            select(AuditEvent).order_by(AuditEvent.seq))]


def test_set_up_shows_a_qr_code_and_the_key_then_the_recovery_codes(console: Console) -> None:
    officer, path = console.invite("dana@example.org", "reviewer")
    page = console.get(path)
    assert page.status_code == 200
    assert "<svg" in page.text and "QR code for your authenticator app" in page.text
    assert 'id="totp-key"' in page.text and "dana@example.org" in page.text
    done = console.set_up(officer, path)
    assert done.status_code == 200 and len(officer.recovery) == 10
    assert done.headers["Cache-Control"] == "no-store"
    again = console.get(path)  # the link is spent
    assert again.status_code == 404 and "does not work" in again.text


def test_set_up_refusals_keep_the_same_key(console: Console) -> None:
    officer, path = console.invite("dana@example.org", "reviewer")
    secret = console.get(path).text.split('name="secret" value="')[1][:32]
    officer.secret = secret
    short = console.post(path, password="short", confirm="short", secret=secret,
                         code=console.totp(officer))
    assert short.status_code == 400 and "at least 12" in short.text
    assert f'value="{secret}"' in short.text  # the app already scanned keeps working
    mismatch = console.post(path, password=PASSWORD, confirm=PASSWORD + "x", secret=secret,
                            code=console.totp(officer))
    assert mismatch.status_code == 400 and "not the same" in mismatch.text
    wrong = console.post(path, password=PASSWORD, confirm=PASSWORD, secret=secret,
                         code="000000" if console.totp(officer) != "000000" else "111111")
    assert wrong.status_code == 400 and "not right" in wrong.text
    with console.rt.transaction() as session:
        assert session.get(Officer, officer.id).status == "invited"  # type: ignore[union-attr]


def test_sign_in_sets_a_console_cookie_and_lands_on_the_queue(console: Console) -> None:
    officer = console.officer("dana@example.org", "reviewer")
    cookie = console.client.get_cookie("dsar_console", path="/console")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Strict"
    queue = console.get("/console/")
    assert queue.status_code == 200 and "dana@example.org (reviewer)" in queue.text
    assert trail(console)[-1][:2] == ("officer.signed_in", f"officer:{officer.id}")


def test_no_console_page_before_both_factors(console: Console) -> None:
    officer, path = console.invite("dana@example.org", "reviewer")
    console.set_up(officer, path)
    refused = console.sign_in(officer, code="")
    assert refused.status_code == 400 and "Enter the code" in refused.text
    assert console.client.get_cookie("dsar_console", path="/console") is None
    page = console.client.get("/console/")
    assert page.status_code == 303 and "/console/sign-in" in page.headers["Location"]


def test_a_failure_does_not_say_which_part_was_wrong(console: Console) -> None:
    officer = console.officer("dana@example.org", "reviewer")
    console.client.delete_cookie("dsar_console", path="/console")
    answers = [console.sign_in(officer, password="wrong password!"),
               console.sign_in(officer, code="123456"),
               console.post("/console/sign-in", email="nobody@example.org", password=PASSWORD,
                            code="123456")]
    assert [a.status_code for a in answers] == [401, 401, 401]
    # the CSRF token carries a timestamp: it differs when the answers straddle a second
    texts = {CSRF.sub("", a.text.split('<main')[1]).replace("nobody@", "dana@")
             for a in answers}
    assert len(texts) == 1 and "email address, password or code is not right" in texts.pop()


def test_a_used_code_is_refused_in_the_browser_too(console: Console) -> None:
    officer = console.officer("dana@example.org", "reviewer")
    code = console.totp(officer)  # the one just used
    console.client.delete_cookie("dsar_console", path="/console")
    console.get("/console/sign-in")
    again = console.post("/console/sign-in", email=officer.email, password=PASSWORD, code=code)
    assert again.status_code == 401


def test_a_recovery_code_signs_in_once_and_says_how_many_are_left(console: Console) -> None:
    officer = console.officer("dana@example.org", "reviewer")
    console.client.delete_cookie("dsar_console", path="/console")
    used = console.sign_in(officer, code=officer.recovery[0])
    assert used.status_code == 303
    assert "9 left" in console.get("/console/").text
    console.client.delete_cookie("dsar_console", path="/console")
    assert console.sign_in(officer, code=officer.recovery[0]).status_code == 401


def test_throttled_sign_in_is_429_with_retry_after(console: Console) -> None:
    officer = console.officer("dana@example.org", "reviewer")
    for _ in range(4):
        assert console.sign_in(officer, password="wrong password!").status_code == 401
    console.get("/console/sign-in")
    throttled = console.post("/console/sign-in", email=officer.email, password=PASSWORD,
                             code=console.totp(officer))
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
    assert "Wait 1 seconds" in throttled.text


def test_sign_out_ends_the_session_on_the_server(console: Console) -> None:
    officer = console.officer("dana@example.org", "reviewer")
    token = console.client.get_cookie("dsar_console", path="/console").value  # type: ignore[union-attr]
    console.get("/console/")
    out = console.post("/console/sign-out")
    assert out.status_code == 303 and console.client.get_cookie("dsar_console",
                                                               path="/console") is None
    console.client.set_cookie("dsar_console", token, path="/console")  # a copy kept
    assert console.client.get("/console/").status_code == 303
    assert trail(console)[-1][:2] == ("officer.signed_out", f"officer:{officer.id}")


def test_an_idle_session_sends_the_officer_to_sign_in_again(console: Console) -> None:
    officer = console.officer("dana@example.org", "reviewer")
    console.clock.advance(minutes=31)
    page = console.client.get("/console/?status=processing")
    assert page.status_code == 303
    assert page.headers["Location"] == "/console/sign-in?next=/console/?status%3Dprocessing"
    signed = console.sign_in(officer, next_="/console/?status=processing")
    assert signed.headers["Location"] == "/console/?status=processing"


def test_after_sign_in_only_a_console_page_of_this_site(console: Console) -> None:
    officer, path = console.invite("dana@example.org", "reviewer")
    console.set_up(officer, path)
    for target, lands in [("/console/", "/console/"), ("https://evil.example/", "/console/"),
                          ("//evil.example/console/", "/console/"),
                          ("/console/\\evil", "/console/"), ("/requests/x", "/console/")]:
        console.client.delete_cookie("dsar_console", path="/console")
        signed = console.sign_in(officer, next_=target)
        assert signed.status_code == 303 and signed.headers["Location"] == lands, target


def test_forms_without_a_csrf_token_are_refused(console_app: Flask) -> None:
    client = console_app.test_client()
    answer = client.post("/console/sign-in", data={"email": "a@example.org",
                                                    "password": PASSWORD, "code": "123456"})
    assert answer.status_code == 400 and "The form had expired" in answer.text
