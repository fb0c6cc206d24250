"""Every page a requester can reach, in Chromium, checked with axe-core (no violation
of impact serious or critical): the status page in each state, the message pages
(410, 429), and the status page's updates with and without JavaScript.

The requests are made in the browser (form, code from the outbox), so its session
holds their tokens; officers' decisions and the work are done beside it (the
workflow functions, the in-process executor), then the page is loaded again. One
Chromium for the module (tests/support/browser.py); SQLite, desktop: the journey
in test_browser.py covers PostgreSQL and the phone's layout.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import Page, expect
from sqlalchemy import update

from dsar.clock import MovableClock
from dsar.connector import PermanentError
from dsar.database import utcnow
from dsar.executor import InProcessExecutor
from dsar.models import ExportBundle
from dsar.portal import pages
from dsar.runtime import Runtime
from dsar.texts import DEFAULTS as T
from dsar.workflow import requests as flow
from dsar.workflow.states import Status, transition
from tests.portal.journey import Outbox, body_of, link_in
from tests.support.browser import LiveServer, assert_accessible
from tests.support.engine_connectors import Script

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

GENEROUS = {"RATE_LIMIT_SUBMIT": "100 per minute", "RATE_LIMIT_VERIFY": "100 per minute",
            "RATE_LIMIT_RESEND": "100 per minute"}
PEOPLE = [f"person{n}@example.org" for n in range(10)]


@pytest.fixture
def stores(scripts: dict[str, Script]) -> dict[str, Script]:
    """Two scripted stores holding everyone's records; one has a label."""
    for name in ("accounts", "archive"):
        scripts[name] = Script()
        for person in PEOPLE:
            scripts[name].seed(person, 2)
    return scripts


@pytest.fixture
def app(portal_app: Callable[..., Flask], stores: dict[str, Script],
        serve: Callable[[Flask], str]) -> Flask:
    app = portal_app(connectors={
        "accounts": {"type": "scripted", "script": "accounts", "label": "Customer accounts"},
        "archive": {"type": "scripted", "script": "archive"}}, **GENEROUS)
    serve(app)
    return app


@pytest.fixture
def rt(app: Flask) -> Runtime:
    runtime: Runtime = app.extensions["dsar"]
    return runtime


@pytest.fixture
def outbox(app: Flask, rt: Runtime) -> Outbox:
    return Outbox(Path(app.config["OUTBOX_DIR"]), rt)


def start(page: Page, outbox: Outbox, kind: str, email: str) -> str:
    """Submit the form in the browser; the request's id (its page is open)."""
    outbox.new()  # notices of earlier requests: the next mail is this one's code
    page.goto(f"/?kind={kind}")
    page.fill("#email", email)
    page.click("button[type=submit]")
    expect(page.locator("#state")).to_have_class(re.compile(r"\bstate--verifying\b"))
    return page.url.rsplit("/", 1)[1]


def verify(page: Page, outbox: Outbox) -> None:
    page.fill("#code", outbox.code())
    page.click("button[type=submit]")
    expect(page.locator("#code")).to_have_count(0)


def work(rt: Runtime) -> None:
    with InProcessExecutor(rt, 2, poll_seconds=0.05) as executor:
        assert executor.wait_until_idle(30)


def decide(rt: Runtime, request_id: str, action: Callable[..., None], **kwargs: str) -> None:
    with rt.transaction() as session:
        action(session, rt, flow.get(session, request_id), actor="officer:test", **kwargs)


def shows(page: Page, state: str, text: str | None = None) -> None:
    """The request's page, loaded again, in ``state`` (saying ``text``); and accessible."""
    page.reload()
    expect(page.locator("#state")).to_have_class(re.compile(rf"\bstate--{state}\b"))
    if text is not None:
        expect(page.locator("#state")).to_have_text(text)
    assert "http-equiv" not in page.content()
    assert_accessible(page)


def test_an_access_request_in_every_state(page: Page, rt: Runtime, outbox: Outbox,
                                          stores: dict[str, Script]) -> None:
    request_id = start(page, outbox, "access", PEOPLE[0])
    assert_accessible(page)
    code = outbox.code()
    page.fill("#code", f"{(int(code) + 1) % 1_000_000:06d}")
    page.click("button[type=submit]")
    expect(page.locator("#code")).to_have_attribute("aria-invalid", "true")
    assert_accessible(page)  # a wrong code
    page.fill("#code", code)
    page.click("button[type=submit]")
    expect(page.locator("#code")).to_have_count(0)
    shows(page, "processing", T["status.processing"])
    work(rt)
    shows(page, "completed", T["status.completed"])
    expect(page.locator("a[download]")).to_be_visible()
    for _ in range(3):
        fetched = page.request.get(f"/requests/{request_id}/download")
        assert fetched.status == 200
    shows(page, "completed", T["status.completed.download_exhausted"])
    expect(page.get_by_role("link", name=T["status.new_access_request"])).to_be_visible()
    answer = page.goto(f"/requests/{request_id}/download")  # the 410 message page
    assert answer is not None and answer.status == 410
    expect(page.locator("h1")).to_have_text(T["error.410.title"])
    assert_accessible(page)

    page.goto("/")
    other = start(page, outbox, "access", PEOPLE[1])
    verify(page, outbox)
    work(rt)
    with rt.transaction() as session:
        session.execute(update(ExportBundle).where(ExportBundle.request_id == other)
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    shows(page, "completed", T["status.completed.download_expired"])
    page.get_by_role("link", name=T["status.new_access_request"]).click()
    expect(page.locator("#kind-access")).to_be_checked()  # the form, a copy chosen


def test_an_erasure_in_every_state(page: Page, rt: Runtime, outbox: Outbox) -> None:
    denied = start(page, outbox, "erasure", PEOPLE[2])
    verify(page, outbox)
    shows(page, "awaiting_review", T["status.awaiting_review"])
    decide(rt, denied, flow.pause, waiting_for="identity")  # the clock stops (Art. 12A)
    shows(page, "paused", T["status.paused.identity"])
    decide(rt, denied, flow.resume)
    decide(rt, denied, flow.deny, reason=T["deny.reason.legal_claims"])
    shows(page, "denied", T["status.denied"])
    expect(page.locator(".reason")).to_have_text(T["deny.reason.legal_claims"])

    approved = start(page, outbox, "erasure", PEOPLE[3])
    verify(page, outbox)
    decide(rt, approved, flow.approve)
    work(rt)
    shows(page, "completed", T["status.completed.erasure"])


def test_requests_that_ended_unfinished_and_a_refused_resend(
        page: Page, rt: Runtime, outbox: Outbox, stores: dict[str, Script]) -> None:
    expired = start(page, outbox, "access", PEOPLE[4])
    with rt.transaction() as session:
        transition(session, rt.crypto, flow.get(session, expired), Status.EXPIRED,
                   actor="system")
    shows(page, "expired", T["status.expired"])
    expect(page.get_by_role("link", name=T["status.new_request"])).to_be_visible()

    cancelled = start(page, outbox, "access", PEOPLE[5])
    decide(rt, cancelled, flow.cancel, reason="asked by phone")
    shows(page, "cancelled", T["status.cancelled"])

    start(page, outbox, "access", PEOPLE[6])
    with page.expect_navigation() as navigation:
        page.click("form.resend button[type=submit]")  # at once: too soon
    answer = navigation.value
    assert answer is not None and answer.status == 429
    assert_accessible(page)

    stores["archive"].fail_times, stores["archive"].fail_with = 1, PermanentError
    start(page, outbox, "access", PEOPLE[7])
    verify(page, outbox)
    work(rt)
    shows(page, "partially_failed", T["status.partially_failed"])


# -- the page while work is under way ------------------------------------------------------

@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> float:
    """The status page's script reads it again every 0.3 s, not 10 s."""
    monkeypatch.setattr(pages, "POLL_SECONDS", 0.3)
    return 0.3


def test_the_page_follows_the_work_in_a_polite_live_region_and_pauses(
        page: Page, rt: Runtime, outbox: Outbox, quick: float) -> None:
    start(page, outbox, "access", PEOPLE[8])
    verify(page, outbox)
    state, pause = page.locator("#state"), page.locator("#pause-updates")
    expect(state).to_have_class(re.compile(r"\bstate--processing\b"))
    expect(page.locator("#status-live")).to_have_attribute("aria-live", "polite")
    expect(pause).to_be_visible()  # the script shows it
    expect(pause).to_have_text(T["status.pause_updates"])
    expect(page.locator("#updates-hint")).to_have_text(T["status.refreshing"])
    assert_accessible(page)
    page.evaluate("window.dsarSamePage = true")  # gone if the page were loaded again

    pause.click()
    expect(pause).to_have_text(T["status.resume_updates"])
    expect(page.locator("#updates-hint")).to_have_text(T["status.updates_paused"])
    work(rt)
    page.wait_for_timeout(quick * 4 * 1000)  # several rounds: paused, nothing moves
    expect(state).to_have_class(re.compile(r"\bstate--processing\b"))

    pause.click()  # resume: the state, the facts and the progress come up to date
    expect(state).to_have_class(re.compile(r"\bstate--completed\b"))
    expect(state).to_have_text(T["status.completed"])
    expect(page.locator("a[download]")).to_be_visible()
    expect(page.locator("table.progress td").first).to_have_text(T["progress.done"])
    expect(page.locator("#updates")).to_have_count(0)  # nothing left to follow
    assert page.evaluate("window.dsarSamePage === true")
    assert_accessible(page)


@pytest.fixture
def no_script_page(chromium: Chromium, live_server: LiveServer) -> Iterator[Page]:
    context = chromium.new_context(base_url=live_server.url, java_script_enabled=False)
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_without_javascript_check_again_reloads_and_nothing_else_shows(
        no_script_page: Page, rt: Runtime, outbox: Outbox) -> None:
    page = no_script_page
    request_id = start(page, outbox, "access", PEOPLE[9])
    verify(page, outbox)
    expect(page.locator("#state")).to_have_class(re.compile(r"\bstate--processing\b"))
    expect(page.locator("#pause-updates")).to_be_hidden()  # it needs the script
    expect(page.locator("#updates-hint")).to_have_text(T["status.check_hint"])
    work(rt)
    check = page.get_by_role("link", name=T["status.check_again"])
    expect(check).to_have_attribute("href", f"/requests/{request_id}")
    check.click()
    expect(page.locator("#state")).to_have_text(T["status.completed"])
    expect(page.get_by_role("link", name=T["status.check_again"])).to_have_count(0)


def test_locked_out_then_recovered_then_told_by_mail_then_expired(
        page: Page, chromium: Chromium, live_server: LiveServer, rt: Runtime,
        outbox: Outbox, tmp_path: Path) -> None:
    """One requester's whole journey through what can go wrong: too many wrong
    codes (no code box: a new code, and when), a new code asked too soon (the
    request's own page says when), then the new code; the completion mail, its
    link opened on another device, the download; a week later, the expired
    link (says so, offers a new request). Every page accessible."""
    clock = rt.clock = MovableClock(utcnow())
    request_id = start(page, outbox, "access", PEOPLE[7])
    outbox.new()  # the first code: mistyped five times below
    for _ in range(int(rt.settings["CODE_MAX_ATTEMPTS"])):
        page.fill("#code", "000000")
        page.click("form[action$='/verify'] button")
    expect(page.locator("#code")).to_have_count(0)
    expect(page.locator("#locked")).to_contain_text(T["verify.locked"])
    assert_accessible(page)

    page.click("form.resend button")  # the first code went out seconds ago: not yet
    expect(page.locator(".error-summary")).to_contain_text("You can ask again in")
    expect(page.locator("#resend-when")).to_contain_text("1 minute")
    assert page.url.endswith(f"/requests/{request_id}/resend")
    assert_accessible(page)

    clock.advance(minutes=1)
    page.click("form.resend button")
    expect(page.locator("#code")).to_be_visible()  # a new code: the box is back
    verify(page, outbox)
    work(rt)
    shows(page, "completed", T["status.completed"])

    (mail,) = [m for m in outbox.new() if request_id in body_of(m)]
    assert mail["Subject"] == T["mail.access_ready.subject"]
    assert f"/requests/{request_id}/download" not in body_of(mail)  # the page, not the file
    phone = chromium.new_context(base_url=live_server.url, accept_downloads=True)
    try:
        other = phone.new_page()
        other.goto(link_in(mail))
        assert other.url.endswith(f"/requests/{request_id}")  # the token left the address
        expect(other.locator("#state")).to_have_text(T["status.completed"])
        assert_accessible(other)
        with other.expect_download() as download:
            other.click("a[download]")
        download.value.save_as(tmp_path / "mine.zip")
        assert (tmp_path / "mine.zip").stat().st_size > 0
    finally:
        phone.close()

    clock.advance(days=int(rt.settings["EXPORT_LINK_DAYS"]), seconds=1)
    shows(page, "completed", T["status.completed.download_expired"])
    expect(page.locator("a[download]")).to_have_count(0)
    page.get_by_role("link", name=T["status.new_access_request"]).click()
    expect(page.locator("#kind-access")).to_be_checked()
    assert_accessible(page)
