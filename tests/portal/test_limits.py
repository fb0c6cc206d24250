"""Rate limits on submit, verify and resend: per IP, and verify and resend per
holder of a request's token; POSTs only. No limit counts per email address:
someone else naming an address never counts against its owner
(tests/portal/test_owner_first.py)."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask import Flask

from dsar.texts import DEFAULTS as T
from dsar.texts import duration
from tests.portal.journey import ALICE, Browser, count

TOO_MANY = re.escape(T["error.429.body"]).replace(r"\{wait\}", r"(.+?)")


def _assert_limited(answer: object) -> None:
    status = getattr(answer, "status_code", None)
    text = str(getattr(answer, "text", ""))
    assert status == 429, text
    found = re.search(TOO_MANY, text)
    assert found and T["error.429.title"] in text
    seconds = int(getattr(answer, "headers")["Retry-After"])  # noqa: B009
    assert 0 < seconds <= 60 and found.group(1) == duration(T, seconds)


def test_submit_is_limited_per_ip(portal_app: Callable[..., Flask]) -> None:
    browser = Browser(portal_app(RATE_LIMIT_SUBMIT="2 per minute"))
    for _ in range(5):
        assert browser.client.get("/").status_code == 200  # pages do not count
    assert browser.submit("access", "one@example.org").status_code == 303
    assert browser.submit("access", "two@example.org").status_code == 303
    _assert_limited(browser.submit("access", "three@example.org"))
    assert count(browser.rt) == 2
    elsewhere = Browser(browser.app, REMOTE_ADDR="10.0.0.9")
    assert elsewhere.submit("access", "four@example.org").status_code == 303


def test_verify_is_limited_per_ip_and_per_request(portal_app: Callable[..., Flask]) -> None:
    browser = Browser(portal_app(RATE_LIMIT_VERIFY="3 per minute"))
    first, second = browser.start(), browser.start("access", "bob@example.org")
    for _ in range(3):
        assert browser.verify(first, "000000").status_code in (400, 303)
    _assert_limited(browser.verify(second, "000000"))  # same IP, another request
    browser.client.environ_base["REMOTE_ADDR"] = "10.0.0.7"
    _assert_limited(browser.verify(first, "000000"))  # another IP, same request
    assert browser.verify(second, "000000").status_code in (400, 303)


def test_resend_is_limited_per_ip_and_per_request(portal_app: Callable[..., Flask]) -> None:
    browser = Browser(portal_app(RATE_LIMIT_RESEND="2 per minute"))
    first, second = browser.start(), browser.start("access", "bob@example.org")
    for _ in range(2):  # the cooldown's own 429 still counts
        cooldown = browser.resend(first)
        assert cooldown.status_code == 429 and "You can ask again in" in cooldown.text
    _assert_limited(browser.resend(second))
    browser.client.environ_base["REMOTE_ADDR"] = "10.0.0.8"
    _assert_limited(browser.resend(first))
    assert "You can ask again in" in browser.resend(second).text


def test_only_a_refusal_carries_retry_after(portal_app: Callable[..., Flask]) -> None:
    """A successful submission's redirect and a refused code's page must not
    tell the browser to come back in an hour (the limiter's window)."""
    browser = Browser(portal_app(RATE_LIMIT_SUBMIT="1 per hour"))
    submitted = browser.submit("access", ALICE)
    assert submitted.status_code == 303 and "Retry-After" not in submitted.headers
    request_id = submitted.headers["Location"].rsplit("/", 1)[1]
    wrong = browser.verify(request_id, "000000")
    assert wrong.status_code == 400 and "Retry-After" not in wrong.headers
    limited = browser.submit("access", "bob@example.org")
    assert limited.status_code == 429 and 60 < int(limited.headers["Retry-After"]) <= 3600


def test_a_long_wait_is_said_in_minutes_and_hours(portal_app: Callable[..., Flask]) -> None:
    """An hourly limit's wait reads "59 minutes", never "3540 seconds"; the
    Retry-After header stays in seconds."""
    browser = Browser(portal_app(RATE_LIMIT_SUBMIT="1 per hour"))
    assert browser.submit("access", ALICE).status_code == 303
    limited = browser.submit("access", "bob@example.org")
    seconds = int(limited.headers["Retry-After"])
    assert limited.status_code == 429 and 60 < seconds <= 3600
    wait = duration(T, seconds)
    assert re.fullmatch(r"(5\d|60) minutes|1 hour", wait), wait
    assert f"Please wait {wait}, then try again." in limited.text
    assert "seconds" not in limited.text and str(seconds) not in limited.text
