"""The requester's journey in a real browser (Chromium), by keyboard, checked with axe-core.

Form → the form with its errors → the code page (and a mistyped code) → the status
page while the work waits → completed, with the executor running → the zip, downloaded
by the browser; and the 404 page. Every page is checked with axe-core (no violation of
impact serious or critical), on a desktop (SQLite and PostgreSQL) and on a 390 px
wide phone screen (SQLite). The status page in every other state a requester can
reach, the 410 and 429 pages and the page's updates: test_browser_pages.py.

``make screenshots`` runs this with ``DSAR_SCREENSHOTS=docs/screenshots``: each page
is then saved as ``portal-<page>.png`` (``-mobile`` at 390 px), from the SQLite run.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Page, expect

from dsar.demo import DemoInfo, seed
from dsar.executor import InProcessExecutor
from dsar.texts import DEFAULTS as T
from tests.portal.journey import Outbox
from tests.support.browser import (
    DESKTOP,
    MOBILE,
    AccessibilityViolation,
    assert_accessible,
    focused,
    screenshot,
    tab_to,
)

COMPLETION_S = 30  # how long the journey waits for the executor to finish
#: the labels the demo's connector file gives its stores (dsar/demo.py)
DEMO_LABELS = {"crm": "Customer accounts and orders", "mail": "Emails with our support team",
               "chat": "Our community chat"}
#: the status page once the code is accepted: verified, or already processing
WORKING = re.compile(r"\bstate--(verified|processing)\b")


@pytest.fixture
def demo(tmp_path: Path) -> DemoInfo:
    return seed(tmp_path / "instance", customers=3)


@pytest.fixture
def app(portal_app: Callable[..., Flask], demo: DemoInfo,
        serve: Callable[[Flask], str]) -> Flask:
    """The demo app, served to the browser (no executor yet: the test starts it)."""
    app = portal_app(CONNECTORS=str(demo.connector_file))
    serve(app)
    return app


@pytest.fixture
def outbox(app: Flask) -> Outbox:
    return Outbox(Path(app.config["OUTBOX_DIR"]), app.extensions["dsar"])


def snap(request: pytest.FixtureRequest, page: Page, name: str) -> None:
    """The page's screenshot for the docs: the SQLite run only, one per viewport."""
    if "[sqlite" not in request.node.name:
        return
    mobile = page.viewport_size == MOBILE
    screenshot(page, f"portal-{name}{'-mobile' if mobile else ''}")


def submit_by_keyboard(page: Page) -> int:
    """Press Enter on the form's button (reached by Tab) and wait for the page it
    leads to (after a redirect); the HTTP status of the POST's answer."""
    tab_to(page, "button[type=submit]")
    with page.expect_navigation() as navigation:
        page.keyboard.press("Enter")
    answer = navigation.value
    assert answer is not None
    posted = answer.request
    while posted.redirected_from is not None:
        posted = posted.redirected_from
    assert posted.method == "POST"
    first = posted.response()
    assert first is not None
    return first.status


# The journey on both databases; the phone's layout (and the checks about axe-core
# itself, below) on SQLite: they are about the pages, not the database.
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.mark.parametrize(("database_url", "viewport"),
                         [("sqlite", DESKTOP), ("postgresql", DESKTOP), ("sqlite", MOBILE)],
                         ids=["sqlite-desktop", "postgresql-desktop", "sqlite-mobile"],
                         indirect=["database_url"])
def test_access_journey(page: Page, app: Flask, demo: DemoInfo, outbox: Outbox,
                        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    page.goto("/")
    expect(page.locator("h1")).to_have_text(T["form.title"])
    assert_accessible(page)
    snap(request, page, "form")

    # the skip link is the first stop and moves the focus to the content
    page.keyboard.press("Tab")
    assert focused(page, "a.skip-link")
    page.keyboard.press("Enter")
    assert focused(page, "main")

    # sent empty: the error summary, and a message by each field
    assert submit_by_keyboard(page) == 400
    summary = page.locator(".error-summary")
    expect(summary).to_be_visible()
    expect(summary).to_have_attribute("role", "alert")
    expect(page.locator("#email")).to_have_attribute("aria-invalid", "true")
    assert_accessible(page)
    snap(request, page, "form-errors")

    # filled in by keyboard only: a radio chosen with Space, the address typed
    tab_to(page, "#kind-access")
    page.keyboard.press("Space")
    expect(page.locator("#kind-access")).to_be_checked()
    tab_to(page, "#email")
    page.keyboard.press("Control+A")
    page.keyboard.type(demo.emails[0])
    assert submit_by_keyboard(page) == 303  # to the status page
    assert re.search(r"/requests/[^/]+$", page.url), page.url
    expect(page.locator("#state")).to_have_text(T["status.verifying"])
    expect(page.locator("#code")).to_be_visible()
    assert_accessible(page)
    snap(request, page, "code")

    # a mistyped code: the page again with the error, then the code from the mail
    code = outbox.code()
    tab_to(page, "#code")
    page.keyboard.type(code[:3])
    assert submit_by_keyboard(page) == 400
    expect(page.locator("#code")).to_have_attribute("aria-invalid", "true")
    assert_accessible(page)
    snap(request, page, "code-error")
    tab_to(page, "#code")
    page.keyboard.type(code)
    assert submit_by_keyboard(page) == 303
    expect(page.locator("#state")).to_have_class(WORKING)
    assert_accessible(page)
    snap(request, page, "status")

    with InProcessExecutor(app.extensions["dsar"], 2, poll_seconds=0.05):
        deadline = time.monotonic() + COMPLETION_S
        state = page.locator("#state")
        while "state--completed" not in (state.get_attribute("class") or ""):
            assert time.monotonic() < deadline, f"not completed in {COMPLETION_S} s"
            time.sleep(0.2)
            page.reload()
    expect(state).to_have_text(T["status.completed"])
    for store in ("crm", "mail", "chat"):  # by the demo's labels, never by their names
        label = DEMO_LABELS[store]
        row = page.locator("table.progress tr", has=page.locator(f"th:text-is('{label}')"))
        expect(row.locator("td")).to_have_text(T["progress.done"])
        expect(page.locator(f"th:text-is('{store}')")).to_have_count(0)
    assert_accessible(page)
    snap(request, page, "done")

    # the zip, downloaded by the browser from the link reached by keyboard
    tab_to(page, "a[download]")
    with page.expect_download() as download:
        page.keyboard.press("Enter")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name.startswith("my-data-") and path.suffix == ".zip"
    with zipfile.ZipFile(path) as bundle:
        members = {name: bundle.read(name) for name in bundle.namelist()}
    manifest = json.loads(members.pop("manifest.json"))
    assert {entry["name"] for entry in manifest["files"]} == set(members)
    for entry in manifest["files"]:
        assert hashlib.sha256(members[entry["name"]]).hexdigest() == entry["sha256"]
    assert demo.emails[0].encode() in members["crm.json"]

    answer = page.goto("/no-such-page")
    assert answer is not None and answer.status == 404
    expect(page.locator("h1")).to_have_text(T["error.404.title"])
    assert_accessible(page)
    snap(request, page, "404")


@SQLITE
def test_axe_finds_what_is_wrong(page: Page, app: Flask) -> None:
    """The check is not vacuous: the form without its address label fails it."""
    page.goto("/")
    assert_accessible(page)
    page.evaluate("document.querySelector('label[for=email]').remove()")
    with pytest.raises(AccessibilityViolation) as found:
        assert_accessible(page)
    assert "label" in found.value.rules
    assert "#email" in str(found.value) and "dequeuniversity.com" in str(found.value)


@SQLITE
def test_status_page_while_working(page: Page, app: Flask, demo: DemoInfo,
                                   outbox: Outbox) -> None:
    """No <meta http-equiv=refresh> (axe-core meta-refresh, WCAG 2.2.1): "Check
    again", and a script the requester can pause (test_browser_pages.py)."""
    page.goto("/")
    page.check("#kind-access")
    page.fill("#email", demo.emails[1])
    page.click("button[type=submit]")
    page.fill("#code", outbox.code())
    page.click("button[type=submit]")
    expect(page.locator("#state")).to_have_class(WORKING)
    expect(page.locator("meta[http-equiv=refresh]")).to_have_count(0)
    expect(page.get_by_role("link", name=T["status.check_again"])).to_be_visible()
    expect(page.get_by_role("button", name=T["status.pause_updates"])).to_be_visible()
    assert_accessible(page)
