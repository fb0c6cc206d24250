"""The officer's journey in a real browser (Chromium), by keyboard, checked
with axe-core on every console page (no violation of impact serious or
critical): an admin sets up their account from the one-time link (the key
read off the page into an authenticator), signs in with both factors,
invites a reviewer; the reviewer sets up, signs in, and is refused an admin
page.

``make screenshots`` saves each page as ``console-<page>.png`` (SQLite run).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

import pyotp
import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, expect

from dsar.clock import MovableClock
from dsar.officers import accounts
from tests.console.client import PASSWORD
from tests.console.conftest import START
from tests.support.browser import DESKTOP, assert_accessible, screenshot, tab_to


@pytest.fixture
def app(make_app: Callable[..., Flask], serve: Callable[[Flask], str]) -> Flask:
    app = make_app(TESTING=True)
    app.extensions["dsar"].clock = MovableClock(START)
    serve(app)
    return app


def snap(request: pytest.FixtureRequest, page: Page, name: str) -> None:
    if "[sqlite" in request.node.name:
        screenshot(page, f"console-{name}")


def press_submit(page: Page, selector: str = "main button[type=submit]") -> int:
    """Enter on the form's button, reached by Tab; the status of the POST's answer."""
    tab_to(page, selector)
    with page.expect_navigation() as navigation:
        page.keyboard.press("Enter")
    answer = navigation.value
    assert answer is not None
    posted = answer.request
    while posted.redirected_from is not None:
        posted = posted.redirected_from
    first = posted.response()
    assert first is not None
    return first.status


def type_into(page: Page, selector: str, text: str) -> None:
    tab_to(page, selector)
    page.keyboard.press("Control+A")
    page.keyboard.type(text)


def set_up(page: Page, app: Flask, path: str, request: pytest.FixtureRequest,
           name: str) -> pyotp.TOTP:
    """The set-up page by keyboard; returns the authenticator holding the key."""
    page.goto(path)
    expect(page.locator("h1")).to_have_text("Set up your account")
    expect(page.locator(".qr svg")).to_be_visible()
    assert_accessible(page)
    snap(request, page, f"{name}-setup")
    app_key = pyotp.TOTP(page.locator("#totp-key").inner_text().replace(" ", ""))
    type_into(page, "#password", PASSWORD)
    type_into(page, "#confirm", PASSWORD)
    type_into(page, "#code", app_key.at(app.extensions["dsar"].now()))
    assert press_submit(page) == 200
    expect(page.locator(".recovery-codes li")).to_have_count(10)
    assert_accessible(page)
    snap(request, page, f"{name}-codes")
    return app_key


def sign_in(page: Page, app: Flask, email: str, app_key: pyotp.TOTP) -> int:
    rt = app.extensions["dsar"]
    rt.clock.advance(seconds=30)  # a fresh code: each is good once
    page.goto("/console/sign-in")
    type_into(page, "#email", email)
    type_into(page, "#password", PASSWORD)
    type_into(page, "#code", app_key.at(rt.now()))
    return press_submit(page)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("viewport", [DESKTOP])
def test_officer_accounts_journey(page: Page, chromium: Browser, app: Flask,
                                  request: pytest.FixtureRequest) -> None:
    rt = app.extensions["dsar"]
    with rt.transaction() as session:  # what `dsar officers create --role admin` does
        invitation = accounts.create(session, rt, "boss@example.org", "admin",
                                     actor="operator:test")
    admin_key = set_up(page, app, urlsplit(invitation.url).path, request, "admin")

    page.goto("/console/")  # not signed in: the sign-in page, with the way back
    expect(page.locator("h1")).to_have_text("Sign in to the console")
    assert_accessible(page)
    snap(request, page, "sign-in")
    assert press_submit(page) == 400  # empty: the error summary
    expect(page.locator(".error-summary")).to_be_visible()
    assert_accessible(page)

    assert sign_in(page, app, "boss@example.org", admin_key) == 303
    expect(page.locator("h1")).to_have_text("Queue")
    expect(page.locator(".who")).to_have_text("boss@example.org (admin)")
    assert_accessible(page)
    snap(request, page, "queue")

    page.goto("/console/officers/new")
    assert_accessible(page)
    type_into(page, "#email", "rita@example.org")
    tab_to(page, "#role-auditor")  # a radio group is one Tab stop; arrows choose
    page.keyboard.press("Space")
    page.keyboard.press("ArrowDown")
    expect(page.locator("#role-reviewer")).to_be_checked()
    assert press_submit(page) == 200
    link = page.locator("#setup-link").inner_text()
    assert_accessible(page)
    page.goto("/console/officers")
    expect(page.locator("main table")).to_contain_text("rita@example.org")
    assert_accessible(page)
    snap(request, page, "officers")
    page.goto("/console/connectors")
    assert_accessible(page)

    reviewer = chromium.new_context(base_url=page.url.split("/console")[0],
                                    viewport=dict(DESKTOP), locale="en-GB")
    try:
        other = reviewer.new_page()
        reviewer_key = set_up(other, app, urlsplit(link).path, request, "reviewer")
        assert sign_in(other, app, "rita@example.org", reviewer_key) == 303
        refused = other.goto("/console/officers")
        assert refused is not None and refused.status == 403
        expect(other.locator("h1")).to_have_text("Not open to your role")
        assert_accessible(other)
        assert press_submit(other, "header button[type=submit]") == 303  # sign out
        expect(other.locator("h1")).to_have_text("Sign in to the console")
    finally:
        reviewer.close()
    assert re.search(r"/console/", page.url)
