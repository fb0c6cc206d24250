"""Proving the address: the code, its attempts and lifetime, resend, the status link."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

from click.testing import Result
from flask import Flask
from sqlalchemy import update

from dsar.database import utcnow
from dsar.models import Verification
from dsar.texts import DEFAULTS as T
from dsar.texts import duration, say
from tests.portal.journey import Browser, events, status_of


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def _move_back(browser: Browser, request_id: str, **columns: timedelta) -> None:
    with browser.rt.transaction() as session:
        session.execute(update(Verification).where(Verification.request_id == request_id)
                        .values({name: utcnow() - ago for name, ago in columns.items()}))


def _attempts(browser: Browser, request_id: str) -> int:
    with browser.rt.transaction() as session:
        row = session.get(Verification, request_id)
        return row.attempts if row else -1


def test_submit_code_and_verified(browser: Browser) -> None:
    request_id = browser.start("erasure")
    page = browser.status(request_id)
    assert page.status_code == 200 and T["status.verifying"] in page.text
    assert re.search(r'<input id="code" name="code"[^>]*inputmode="numeric"[^>]*'
                     r'autocomplete="one-time-code"', page.text, re.S)
    assert f'action="/requests/{request_id}/resend"' in page.text
    answer = browser.verify(request_id, browser.outbox.code())
    assert answer.status_code == 303 and answer.headers["Location"] == f"/requests/{request_id}"
    page = browser.status(request_id)
    assert T["status.awaiting_review"] in page.text and 'id="code"' not in page.text
    assert status_of(browser.rt, request_id) == "awaiting_review"
    assert events(browser.rt, request_id) == [
        "request.received", "request.verifying", "verification.code_sent",
        "request.verified", "request.awaiting_review"]


def test_wrong_code_counts_and_says_how_many_are_left(browser: Browser) -> None:
    request_id = browser.start()
    code = browser.outbox.code()
    answer = browser.verify(request_id, _wrong(code))
    assert answer.status_code == 400
    text = T["verify.wrong_code"].format(left=4)
    assert f'<li><a href="#code">{text}</a></li>' in answer.text
    assert 'aria-describedby="code-hint code-error"' in answer.text
    assert 'aria-invalid="true"' in answer.text and "<title>Error: " in answer.text
    assert _attempts(browser, request_id) == 1  # committed although refused
    typo = browser.verify(request_id, "12ab56")
    assert typo.status_code == 400 and T["verify.format"] in typo.text
    assert _attempts(browser, request_id) == 1  # a typo spends no attempt
    assert browser.verify(request_id, f"{code[:3]} {code[3:]}").status_code == 303


def test_five_wrong_codes_need_a_new_code_even_for_the_right_one(browser: Browser) -> None:
    request_id = browser.start()
    code = browser.outbox.code()
    for left in (4, 3, 2, 1):
        answer = browser.verify(request_id, _wrong(code))
        assert answer.status_code == 400
        assert say(T, "verify.wrong_code", left=left) in answer.text
    assert "That code is not right. 1 attempt left." in answer.text  # one, singular
    fifth = browser.verify(request_id, _wrong(code))
    assert fifth.status_code == 400 and T["verify.too_many"] in fifth.text
    right = browser.verify(request_id, code)
    assert right.status_code == 400 and T["verify.too_many"] in right.text
    assert status_of(browser.rt, request_id) == "verifying"
    assert events(browser.rt, request_id).count("verification.failed") == 5


def test_expired_code(browser: Browser) -> None:
    request_id = browser.start()
    code = browser.outbox.code()
    _move_back(browser, request_id, expires_at=timedelta(seconds=1))
    answer = browser.verify(request_id, code)
    assert answer.status_code == 410 and T["verify.expired"] in answer.text
    assert status_of(browser.rt, request_id) == "verifying"


def test_resend_cooldown_then_new_code_works_and_old_does_not(browser: Browser) -> None:
    request_id = browser.start()
    old = browser.outbox.code()
    soon = browser.resend(request_id)
    assert soon.status_code == 429
    # the cooldown itself, not the rate limiter's window; said in words, not seconds
    seconds = int(soon.headers["Retry-After"])
    assert 50 <= seconds <= 61
    assert say(T, "resend.cooldown", seconds=seconds) in soon.text
    assert f"ask again in {duration(T, seconds)}." in soon.text
    assert browser.outbox.new() == []
    _move_back(browser, request_id, sent_at=timedelta(minutes=2))
    sent = browser.resend(request_id)
    assert sent.status_code == 303
    assert T["resend.sent"] in browser.status(request_id).text  # flashed once
    assert T["resend.sent"] not in browser.status(request_id).text
    new = browser.outbox.code()
    if new != old:
        assert browser.verify(request_id, old).status_code == 400
    assert browser.verify(request_id, new).status_code == 303


def test_code_for_a_request_not_waiting_is_409(browser: Browser) -> None:
    request_id = browser.start("erasure")
    code = browser.outbox.code()
    assert browser.verify(request_id, code).status_code == 303
    again = browser.verify(request_id, code)
    assert again.status_code == 409 and T["verify.not_waiting"] in again.text
    assert 'href="#code"' not in again.text  # no field to link to any more
    resend = browser.resend(request_id)
    assert resend.status_code == 409 and T["verify.not_waiting"] in resend.text


def test_mail_link_token_moves_into_the_session(browser: Browser) -> None:
    request_id = browser.start()
    body = browser.outbox.new()[0].get_payload(decode=True).decode()  # type: ignore[union-attr]
    link = re.search(r"http://127\.0\.0\.1:5000(/requests/\w+\?token=[\w-]+)", body)
    assert link, body
    phone = Browser(browser.app)  # another device: only the link from the mail
    assert phone.status(request_id).status_code == 404
    first = phone.client.get(link.group(1))
    assert first.status_code == 303 and first.headers["Location"] == f"/requests/{request_id}"
    page = phone.status(request_id)
    assert page.status_code == 200 and T["status.verifying"] in page.text
    assert link.group(1).split("token=")[1] not in page.text


def test_wrong_token_and_unknown_id_get_the_same_404(browser: Browser) -> None:
    request_id = browser.start()
    stranger = Browser(browser.app)
    answers = [stranger.client.get(f"/requests/{request_id}?token=wrong-token"),
               stranger.client.get(f"/requests/{'0' * 32}?token=wrong-token"),
               stranger.status(request_id), stranger.status("0" * 32),
               stranger.client.get(f"/requests/{'x' * 500}?token={'y' * 500}"),
               # PostgreSQL refuses a NUL in a query parameter: no query is made
               stranger.client.get(f"/requests/a%00b?token={'y' * 43}")]
    assert {a.status_code for a in answers} == {404}
    assert len({a.text for a in answers}) == 1 and T["error.404.title"] in answers[0].text
    for action in (stranger.verify(request_id, "123456"), stranger.resend(request_id)):
        assert action.status_code == 404
    with stranger.client.get(f"/requests/{request_id}/download") as download:
        assert download.status_code == 404
    assert _attempts(browser, request_id) == 0


def test_one_token_opens_only_its_own_request(browser: Browser) -> None:
    mine = browser.start()
    other = Browser(browser.app)
    theirs = other.start("access", "bob@example.org")
    assert other.status(theirs).status_code == 200
    assert other.status(mine).status_code == 404
    assert browser.status(theirs).status_code == 404


def test_wrong_method_and_unknown_page_are_friendly(browser: Browser) -> None:
    request_id = browser.start()
    wrong = browser.client.get(f"/requests/{request_id}/verify")
    assert wrong.status_code == 405 and T["error.405.title"] in wrong.text
    assert "POST" in wrong.headers["Allow"]
    missing = browser.client.get("/nothing/here")
    assert missing.status_code == 404 and T["error.404.title"] in missing.text
    assert "Traceback" not in wrong.text + missing.text


def test_denied_request_shows_the_reason(browser: Browser, cli: Callable[..., Result]) -> None:
    request_id = browser.start("erasure")
    browser.verify(request_id, browser.outbox.code())
    result = cli("requests", "deny", request_id, "--reason", "We hold no data about you.",
                 app_=browser.app)
    assert result.exit_code == 0, result.output
    page = browser.status(request_id)
    assert T["status.denied"] in page.text
    assert '<dd class="reason">We hold no data about you.</dd>' in page.text


def test_session_keeps_the_newest_tokens_only(portal_app: Callable[..., Flask]) -> None:
    """A busy browser's cookie stays small: the oldest token is forgotten
    (werkzeug's warning about a cookie over 4 KB would fail this test)."""
    browser = Browser(portal_app(RATE_LIMIT_SUBMIT="100 per minute"))
    ids = [browser.start("access", f"person{n}@example.org") for n in range(40)]
    assert browser.status(ids[0]).status_code == 404
    assert all(browser.status(i).status_code == 200 for i in ids[-10:])
    cookie = browser.client.get_cookie("session")
    assert cookie is not None and len(cookie.value) < 2000
