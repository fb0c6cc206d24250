"""The officers' journey in a real browser (Chromium), by keyboard, checked with
axe-core on every console page it opens (no violation of impact serious or critical).

On the demo's three stores (a made-up customer's erasure waiting for review, its
preview computed by the housekeeping chore): an admin sets up their account from
the one-time link (the key read off the page into an authenticator), signs in with
both factors, filters the queue and invites a reviewer; the reviewer sets up, signs
in, is refused an admin page, finds the erasure by the customer's email, reads its
preview store by store, approves it on the check-answers page and, once the
workers have run it (in the test's thread), sees it completed; an auditor filters
the audit trail to that request, exports it as CSV, asks for a check of the chain
and reads it intact once the housekeeper has run, and reads the dashboard; the
admin opens the dashboard from the navigation. Then (SQLite) every
other page: each action's form, errors and confirmation, the 409 and 404 pages, the
account's and the admin's pages.

``make screenshots`` saves each page as ``console-<page>.png`` (SQLite run).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit

import pyotp
import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from dsar.clock import MovableClock
from dsar.demo import DemoInfo, seed
from dsar.executor import housekeeping_chores
from dsar.models import ErasurePreview, Task
from dsar.officers import accounts
from dsar.workflow import requests as flow
from tests.console.client import PASSWORD, Console, erasure_under_review
from tests.console.conftest import START
from tests.support.browser import DESKTOP, assert_accessible, screenshot, tab_to
from tests.support.workers import drain


@pytest.fixture
def demo(tmp_path: Path) -> DemoInfo:
    return seed(tmp_path / "instance", customers=3)


@pytest.fixture
def app(make_app: Callable[..., Flask], demo: DemoInfo,
        serve: Callable[[Flask], str]) -> Flask:
    """The demo's stores, erasures reviewed, on a frozen clock; served to the browser."""
    app = make_app(TESTING=True, ERASURE_REVIEW=True, CONNECTORS=str(demo.connector_file))
    app.extensions["dsar"].clock = MovableClock(START)
    serve(app)
    return app


def snap(request: pytest.FixtureRequest, page: Page, name: str) -> None:
    """The page's screenshot for the docs, from the SQLite run."""
    if request.node.callspec.params.get("database_url") == "sqlite":
        screenshot(page, f"console-{name}")


def press_submit(page: Page, selector: str = "main button[type=submit]") -> int:
    """Enter on the form's button, reached by Tab; the status of the POST's answer."""
    tab_to(page, selector)
    return press_enter(page)


def press_enter(page: Page) -> int:
    """Enter on the focused element, waiting for the page it leads to; the status of
    the first answer (before any redirect)."""
    with page.expect_navigation() as navigation:
        page.keyboard.press("Enter")
    answer = navigation.value
    assert answer is not None
    sent = answer.request
    while sent.redirected_from is not None:
        sent = sent.redirected_from
    first = sent.response()
    assert first is not None
    return first.status


def type_into(page: Page, selector: str, text: str) -> None:
    tab_to(page, selector)
    page.keyboard.press("Control+A")
    page.keyboard.type(text)


def choose(page: Page, selector: str) -> None:
    """A radio by keyboard: Tab reaches the group (one stop), arrows move to ``selector``."""
    tab_to(page, "main input[type=radio]")
    for _ in range(10):
        if page.locator(selector).is_checked():
            return
        page.keyboard.press("ArrowDown")
    raise AssertionError(f"the arrow keys never chose {selector}")


def set_up(page: Page, app: Flask, path: str, request: pytest.FixtureRequest,
           name: str | None = None) -> pyotp.TOTP:
    """The set-up page by keyboard; returns the authenticator holding the key (the
    pages saved as ``console-<name>-setup`` and ``-codes`` when named)."""
    page.goto(path)
    expect(page.locator("h1")).to_have_text("Set up your account")
    expect(page.locator(".qr svg")).to_be_visible()
    assert_accessible(page)
    if name:
        snap(request, page, f"{name}-setup")
    app_key = pyotp.TOTP(page.locator("#totp-key").inner_text().replace(" ", ""))
    type_into(page, "#password", PASSWORD)
    type_into(page, "#confirm", PASSWORD)
    type_into(page, "#code", app_key.at(app.extensions["dsar"].now()))
    assert press_submit(page) == 200
    expect(page.locator(".recovery-codes li")).to_have_count(10)
    assert_accessible(page)
    if name:
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


def status_on_page(page: Page) -> str:
    return page.locator("dl.facts div", has=page.locator("dt", has_text="Status")) \
        .locator("dd").inner_text()


def preview_rows(page: Page, store: str) -> list[list[str]]:
    section = page.locator("section.store", has=page.locator("h3", has_text=store))
    return [row.locator("td").all_inner_texts()
            for row in section.locator("tbody tr").all()]


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_officer_journey(page: Page, chromium: Browser, app: Flask, demo: DemoInfo,
                         request: pytest.FixtureRequest) -> None:
    rt = app.extensions["dsar"]
    ada, bram, cleo = demo.emails
    bram_id = erasure_under_review(rt, {"email": [bram]})
    erasure_under_review(rt, {"email": [cleo]})
    with rt.transaction() as session:  # an access request still waiting for its code
        flow.submit(session, rt, "access", {"email": [ada]})
    housekeeping_chores(rt)  # the housekeeper's round: both previews computed
    with rt.transaction() as session:
        assert session.get(ErasurePreview, bram_id) is not None

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
    expect(page.locator("table.queue tbody tr")).to_have_count(3)
    assert_accessible(page)
    snap(request, page, "queue")

    # the queue filtered by keyboard: a select takes the typed start of a choice
    tab_to(page, "#status")
    page.keyboard.type("awaiting")
    expect(page.locator("#status")).to_have_value("awaiting_review")
    assert press_submit(page, ".queue-filters button[type=submit]") == 200
    assert "status=awaiting_review" in page.url
    expect(page.locator("table.queue tbody tr")).to_have_count(2)
    expect(page.locator("main")).to_contain_text("Clear the search and filters")
    assert_accessible(page)

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
    expect(page.locator("main")).to_contain_text("crm")
    assert_accessible(page)
    snap(request, page, "connectors")

    reviewer = chromium.new_context(base_url=page.url.split("/console")[0],
                                    viewport=dict(DESKTOP), locale="en-GB")
    try:
        other = reviewer.new_page()
        reviewer_key = set_up(other, app, urlsplit(link).path, request)
        assert sign_in(other, app, "rita@example.org", reviewer_key) == 303
        refused = other.goto("/console/officers")
        assert refused is not None and refused.status == 403
        expect(other.locator("h1")).to_have_text("Not open to your role")
        assert_accessible(other)
        approve_by_keyboard(other, app, bram, bram_id, request)
        with closing(sqlite3.connect(demo.crm)) as crm:  # the store itself has changed
            assert crm.execute("select count(*) from customers where email = ?",
                               (bram,)).fetchone() == (0,)
        assert press_submit(other, "header button[type=submit]") == 303  # sign out
        expect(other.locator("h1")).to_have_text("Sign in to the console")
    finally:
        reviewer.close()
    audit_by_keyboard(chromium, page.url.split("/console")[0], app, bram_id, request)

    # the admin's dashboard, from the navigation: the erasure completed, two open
    tab_to(page, "nav a[href$='/console/dashboard']")
    assert press_enter(page) == 200
    expect(page.locator("h1")).to_have_text("Dashboard")
    expect(page.locator("#figure-open a")).to_have_text("2 open requests: see them in the queue")
    expect(page.locator("#durations-erasure td").first).to_have_text("1")
    expect(page.locator("svg.chart title").first).to_have_text("Requests by status")
    assert_accessible(page)
    snap(request, page, "dashboard")


def audit_by_keyboard(chromium: Browser, base_url: str, app: Flask, request_id: str,
                      request: pytest.FixtureRequest) -> None:
    """An auditor filters the trail to one request, exports it, asks for a check
    of the chain and reads its outcome once the housekeeper has run, then reads
    the dashboard."""
    rt = app.extensions["dsar"]
    with rt.transaction() as session:
        invitation = accounts.create(session, rt, "audrey@example.org", "auditor",
                                     actor="operator:test")
    context = chromium.new_context(base_url=base_url, viewport=dict(DESKTOP), locale="en-GB",
                                   accept_downloads=True)
    try:
        page = context.new_page()
        key = set_up(page, app, urlsplit(invitation.url).path, request)
        assert sign_in(page, app, "audrey@example.org", key) == 303
        tab_to(page, "nav a[href$='/console/audit']")
        assert press_enter(page) == 200
        expect(page.locator("h1")).to_have_text("Audit trail")
        expect(page.locator("#checks")).to_contain_text("The chain has not been checked yet.")
        assert_accessible(page)
        snap(request, page, "trail")

        type_into(page, "#request", request_id)
        assert press_submit(page, ".trail-filters button[type=submit]") == 200
        assert f"request={request_id}" in page.url
        rows = page.locator("table.trail tbody tr")
        actions = page.locator("table.trail tbody tr td:nth-child(4)").all_inner_texts()
        assert actions[0] == "request.completed" and actions[-1] == "request.received"
        assert rows.count() == len(actions)
        assert_accessible(page)
        page.locator("table.trail caption").evaluate("caption => caption.scrollIntoView()")
        snap(request, page, "trail-request")

        with page.expect_download() as download:
            tab_to(page, ".trail-export button[type=submit]")
            page.keyboard.press("Enter")
        saved = download.value
        assert saved.suggested_filename.startswith("dsar-audit-")
        assert saved.suggested_filename.endswith(".csv")
        exported = Path(saved.path()).read_text("utf-8").splitlines()
        assert exported[0].startswith("seq,occurred_at,actor,action,request_id")
        assert len(exported) == 1 + len(actions)
        assert all(request_id in line for line in exported[1:])

        assert press_submit(page, "#checks button[type=submit]") == 303  # check now
        expect(page.locator("#checks")).to_contain_text("is waiting for the housekeeper")
        housekeeping_chores(rt)
        page.reload()
        expect(page.locator("#checks")).to_contain_text("Intact")
        assert_accessible(page)
        snap(request, page, "trail-checked")

        tab_to(page, "nav a[href$='/console/dashboard']")
        assert press_enter(page) == 200
        expect(page.locator("h1")).to_have_text("Dashboard")
        assert_accessible(page)
    finally:
        context.close()

def approve_by_keyboard(page: Page, app: Flask, email: str, request_id: str,
                        request: pytest.FixtureRequest) -> None:
    """The reviewer finds the erasure by the customer's email, reads its preview,
    approves it, and sees it completed once the workers have run it."""
    rt = app.extensions["dsar"]
    page.goto("/console/")
    type_into(page, "#q", email)
    assert press_enter(page) == 303  # the search: to the queue under the address's hash
    assert "subject=" in page.url and email.split("@")[0] not in page.url
    expect(page.locator("table.queue tbody tr")).to_have_count(1)
    assert_accessible(page)
    snap(request, page, "queue-search")

    tab_to(page, f"table.queue a[href$='/{request_id}']")
    assert press_enter(page) == 200
    expect(page.locator("h1")).to_have_text(f"Request {request_id}")
    assert status_on_page(page).startswith("awaiting review")
    expect(page.locator("section.store h3")).to_have_text(["chat", "crm", "mail"])
    assert preview_rows(page, "crm") == [
        ["customers", "mask", "masked: email set to NULL, name set to NULL, phone set to NULL",
         "1"],
        ["invoices", "keep", "hold tax-records: invoices are kept 10 years (tax law)", "2"],
        ["orders", "delete", "row deleted", "2"]]
    expect(page.locator("section.store", has=page.locator("h3", has_text="crm"))) \
        .to_contain_text("Delete 2, mask 1, keep 2 records.")
    assert ["INBOX", "delete", "message sent by the subject deleted", "2"] in \
        preview_rows(page, "mail")
    assert_accessible(page)
    snap(request, page, "request")
    page.locator("#preview").evaluate("heading => heading.scrollIntoView()")
    snap(request, page, "request-preview")

    tab_to(page, ".request-actions a[href$='/approve']")
    assert press_enter(page) == 200
    expect(page.locator("h1")).to_have_text("Approve the erasure")
    assert_accessible(page)
    snap(request, page, "approve")
    assert press_submit(page) == 200  # Continue: the check-answers page
    expect(page.locator("h1")).to_have_text("Check before you confirm: approve the erasure")
    expect(page.locator("ul.happens")).to_contain_text(
        "The erasure starts at once in every store: chat, crm, mail.")
    assert_accessible(page)
    snap(request, page, "approve-confirm")
    assert press_submit(page, "form[action$='/approve/confirm'] button") == 303
    expect(page.locator(".notice[role=status]")).to_have_text("Approved: the erasure has started.")
    assert status_on_page(page) == "processing"
    assert_accessible(page)

    assert drain(rt) > 0
    page.reload()
    assert status_on_page(page) == "completed"
    expect(page.locator("table.queue", has=page.locator("th", has_text="Step"))
           .locator("tbody tr td:nth-child(3)")).to_have_text(["succeeded"] * 3)
    assert_accessible(page)
    page.locator("#tasks").evaluate("heading => heading.scrollIntoView()")
    snap(request, page, "request-completed")


# --- every other page: the actions' forms, errors and confirmations, 409 and 404, the
# account's and the admin's pages (SQLite: they are about the pages, not the database)


def go(page: Page, path: str, status: int = 200) -> None:
    answer = page.goto(path)
    assert answer is not None and answer.status == status, (path, answer and answer.status)
    assert_accessible(page)


def action_path(request_id: str, action: str) -> str:
    return f"/console/requests/{request_id}/{action}"


def confirm(page: Page, action: str, flash: str) -> None:
    """The check-answers page's button: the action done, the request's page with a note."""
    expect(page.locator("h1")).to_contain_text("Check before you confirm")
    assert_accessible(page)
    assert press_submit(page, f"form[action$='/{action}/confirm'] button") == 303
    expect(page.locator(".notice[role=status]")).to_contain_text(flash)
    assert_accessible(page)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_action_and_admin_page_journey(page: Page, app: Flask, demo: DemoInfo,
                                             request: pytest.FixtureRequest) -> None:
    rt = app.extensions["dsar"]
    client = Console(app)  # officers set up through Flask's test client: quicker
    rita = client.officer("rita@example.org", "reviewer")
    boss = client.officer("boss@example.org", "admin")
    assert sign_in(page, app, boss.email, pyotp.TOTP(boss.secret)) == 303
    erasure = erasure_under_review(rt, {"email": [demo.emails[0]]})
    with rt.transaction() as session:  # an access request whose crm task failed
        failed = flow.submit(session, rt, "access", {"email": [demo.emails[1]]})
        failed.status, failed.closed_at = "partially_failed", rt.now()
        session.add(Task(request_id=failed.id, connector="crm", step="export",
                         status="failed", attempts=3, last_error="store unavailable"))
        failed_id = failed.id
    housekeeping_chores(rt)

    # deny: the errors, the reason chosen by keyboard, the answers changed, not confirmed
    go(page, action_path(erasure, "deny"))
    assert press_submit(page) == 400
    expect(page.locator(".error-summary")).to_contain_text("Choose the reason for the denial")
    assert_accessible(page)
    snap(request, page, "deny-errors")
    choose(page, "#template-legal_claims")
    type_into(page, "#details", "A claim is open with you.")
    assert press_submit(page) == 200
    expect(page.locator("dl.summary-list")).to_contain_text("A claim is open with you.")
    assert_accessible(page)
    snap(request, page, "deny-confirm")
    assert press_submit(page, "form.change button") == 200  # Change your answers
    expect(page.locator("#template-legal_claims")).to_be_checked()
    assert_accessible(page)

    # extend, confirmed; a second extension is refused (409)
    go(page, action_path(erasure, "extend"))
    choose(page, "#months-1")
    type_into(page, "#reason", "Three stores to search, one of them archived.")
    assert press_submit(page) == 200
    snap(request, page, "extend-confirm")
    confirm(page, "extend", "Extended: the request is now due on")
    go(page, action_path(erasure, "extend"), 409)
    expect(page.locator("main")).to_contain_text("the deadline was extended already")

    # pause, confirmed; resume (no fields: the confirmation at once), confirmed
    go(page, action_path(erasure, "pause"))
    choose(page, "#waiting_for-identity")
    assert press_submit(page) == 200
    confirm(page, "pause", "Paused: the clock has stopped.")
    rt.clock.advance(days=1)
    assert sign_in(page, app, boss.email, pyotp.TOTP(boss.secret)) == 303  # idle too long
    go(page, action_path(erasure, "resume"))
    expect(page.locator("dl.summary-list div", has_text="Paused for").locator("dd")) \
        .to_have_text("1 day 0 h 0 min")
    confirm(page, "resume", "Resumed: the request is now due on")

    # approve's form, then cancel: its errors, its reason, confirmed
    go(page, action_path(erasure, "approve"))
    go(page, action_path(erasure, "cancel"))
    assert press_submit(page) == 400
    expect(page.locator(".error-summary a[href='#reason']")).to_be_visible()
    expect(page.locator("#reason")).to_have_attribute("aria-invalid", "true")
    assert_accessible(page)
    type_into(page, "#reason", "Withdrawn by phone.")
    assert press_submit(page) == 200
    snap(request, page, "cancel-confirm")
    confirm(page, "cancel", "Cancelled.")
    assert status_on_page(page).startswith("cancelled")

    # retry the failed task (no fields), confirmed
    go(page, action_path(failed_id, "retry"))
    expect(page.locator("dl.summary-list")).to_contain_text("crm (export)")
    confirm(page, "retry", "Retrying 1 failed task.")
    with rt.transaction() as session:
        assert session.scalar(select(Task.status).where(Task.request_id == failed_id)) \
            == "pending"

    go(page, "/console/nowhere", 404)

    # the account's pages: the forms, an error, new recovery codes
    go(page, "/console/account")
    snap(request, page, "account")
    type_into(page, "#password", "not the password")
    assert press_submit(page, "form[action$='/recovery-codes'] button") == 400
    expect(page.locator(".error-summary")).to_be_visible()
    assert_accessible(page)
    type_into(page, "#password", PASSWORD)
    assert press_submit(page, "form[action$='/recovery-codes'] button") == 200
    expect(page.locator(".recovery-codes li")).to_have_count(10)
    assert_accessible(page)

    # the admin's pages: an officer, their reset and disable forms, an invitation's errors
    go(page, f"/console/officers/{rita.id}")
    snap(request, page, "officer")
    go(page, f"/console/officers/{rita.id}/reset")
    go(page, f"/console/officers/{rita.id}/disable")
    go(page, "/console/officers/new")
    assert press_submit(page) == 400
    expect(page.locator(".error-summary")).to_be_visible()
    assert_accessible(page)
