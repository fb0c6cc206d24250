"""A request's page: its audit timeline, each store's task, the identifiers in play
(masked, with where each was found) and, for an erasure, the stored preview store by
store. Reading the page runs nothing and records nothing; computing the preview again
is for reviewers and admins (CSRF), and a worker does it."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select

from dsar.clock import MovableClock
from dsar.console.request_views import mask
from dsar.models import AuditEvent, ErasurePreview, Request, Task
from dsar.workflow import preview
from dsar.workflow import requests as flow
from dsar.workflow.subjects import add_identifiers
from tests.console.client import Console, erasure_under_review
from tests.console.conftest import START
from tests.support.engine_connectors import Script

ANN = "Ann.Smith@Example.org"


@pytest.fixture
def stores_app(make_app: Callable[..., Flask], scripts: dict[str, Script]) -> Flask:
    """crm (three of Ann's records, one kept under a hold), broken (fails), phones
    (takes phone numbers only); erasures reviewed."""
    for name in ("crm", "broken", "phones"):
        scripts[name] = Script()
    scripts["crm"].seed(ANN.lower(), 3)
    scripts["crm"].holds = {f"{ANN.lower()}-0"}
    app = make_app({"crm": {"type": "scripted", "script": "crm"},
                    "broken": {"type": "broken", "script": "broken"},
                    "phones": {"type": "scripted", "script": "phones", "kinds": ["phone"]}},
                   TESTING=True, ERASURE_REVIEW=True)
    app.extensions["dsar"].clock = MovableClock(START)
    return app


@pytest.fixture
def browser(stores_app: Flask) -> Console:
    return Console(stores_app)


def erasure(console: Console) -> str:
    return erasure_under_review(console.rt, {"email": [ANN], "phone": ["+44 20 7946 0958"]})


def audit_count(console: Console) -> int:
    with console.rt.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def test_the_timeline_identifiers_masked_and_no_preview_yet(browser: Console) -> None:
    browser.officer("audrey@example.org", "auditor")
    request_id = erasure(browser)
    with browser.rt.transaction() as session:
        request = session.get(Request, request_id)
        assert request is not None
        add_identifiers(browser.rt, request, {"customer_id": ["C-12345"]},
                        source="connector:crm")
    page = browser.get(f"/console/requests/{request_id}")
    assert page.status_code == 200
    text = page.text
    assert f"Request <code>{request_id}</code>" in text
    with browser.rt.transaction() as session:
        due_at = session.scalar(select(Request.due_at).where(Request.id == request_id))
        assert due_at is not None
    assert "awaiting review" in text and f"({(due_at - browser.rt.now()).days} days left)" in text
    actions = re.findall(r"<strong>([a-z_.]+)</strong> by <code>([^<]+)</code>", text)
    assert actions == [("request.received", "requester"),
                       ("request.verified", "operator:test"),
                       ("request.awaiting_review", "system")]
    assert "<dt>method</dt><dd>out-of-band</dd>" in text
    rows = re.findall(r"<tr><td>([a-z ]+)</td><td><code>([^<]+)</code></td><td>([^<]+)</td>",
                      text)
    assert rows == [("email", "a\u2022\u2022\u2022@e\u2022\u2022\u2022.org", "requester"),
                    ("phone", "+\u2022\u2022\u202258", "requester"),
                    ("customer id", "C\u2022\u2022\u20225", "connector:crm")]
    lowered = text.lower()
    assert "ann.smith" not in lowered and "7946" not in text and "c-12345" not in lowered
    assert "The preview has not been computed yet" in text
    assert "Compute the preview again" not in text  # an auditor reads only


def test_the_stored_preview_store_by_store_and_reloading_runs_and_records_nothing(
        browser: Console, scripts: dict[str, Script]) -> None:
    browser.officer("rita@example.org", "reviewer")
    request_id = erasure(browser)
    browser.clock.advance(minutes=2)
    assert preview.refresh(browser.rt) == 1
    calls = {name: list(script.calls) for name, script in scripts.items()}
    before = audit_count(browser)
    first = browser.get(f"/console/requests/{request_id}")
    second = browser.get(f"/console/requests/{request_id}")
    assert first.status_code == second.status_code == 200
    assert audit_count(browser) == before
    assert {name: script.calls for name, script in scripts.items()} == calls
    text = second.text
    assert "Computed 2026-03-02 09:0" in text and "for 2 identifiers" in text
    assert "Could not be previewed: credentials refused by the store (scripted)" in text
    assert "Delete 2, mask 0, keep 1 record." in text
    assert ("<tr><td>items</td><td>keep</td><td>tax-law: invoices kept 10 years</td>"
            "<td>1</td></tr>") in text
    assert "<tr><td>items</td><td>delete</td><td></td><td>2</td></tr>" in text
    assert "Nothing to erase: no identifiers of the kinds it accepts." not in text  # phones
    assert re.search(r'<h3 id="store-\d">phones</h3>\s*<p>Delete 0, mask 0, keep 0', text)
    assert "Compute the preview again" in text
    assert "The preview has not been computed yet" not in text


def test_a_reviewer_asks_for_the_preview_again_and_a_worker_computes_it(
        browser: Console) -> None:
    reviewer = browser.officer("rita@example.org", "reviewer")
    request_id = erasure(browser)
    preview.refresh(browser.rt)
    browser.clock.advance(minutes=1)
    browser.get(f"/console/requests/{request_id}")
    asked = browser.post(f"/console/requests/{request_id}/preview")
    assert asked.status_code == 303
    assert asked.headers["Location"] == f"/console/requests/{request_id}#preview"
    with browser.rt.transaction() as session:
        event = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        assert event is not None
        assert (event.action, event.actor) == ("erasure.preview_requested",
                                               f"officer:{reviewer.id}")
    page = browser.get(f"/console/requests/{request_id}").text
    assert "A new preview has been asked for" in page  # the flash
    assert "A new preview was asked for 2026-03-02" in page
    browser.clock.advance(minutes=1)
    assert preview.refresh(browser.rt) == 1
    with browser.rt.transaction() as session:
        stored = session.get(ErasurePreview, request_id)
        assert stored is not None and stored.computed_at == browser.rt.now()
    assert "A new preview was asked for" not in browser.get(
        f"/console/requests/{request_id}").text


def test_asking_again_needs_a_reviewer_csrf_and_an_erasure_under_review(
        browser: Console, stores_app: Flask) -> None:
    request_id = erasure(browser)
    auditor = Console(stores_app, address="192.0.2.40")
    auditor.officer("audrey@example.org", "auditor")
    auditor.get(f"/console/requests/{request_id}")
    assert auditor.post(f"/console/requests/{request_id}/preview").status_code == 403
    browser.officer("adam@example.org", "admin")
    no_token = browser.client.post(f"/console/requests/{request_id}/preview")
    assert no_token.status_code == 400 and "The form had expired" in no_token.text
    with browser.rt.transaction() as session:
        access = flow.submit(session, browser.rt, "access", {"email": [ANN]})
        access_id = access.id
    browser.get("/console/")
    assert browser.post(f"/console/requests/{access_id}/preview").status_code == 409
    assert browser.post(f"/console/requests/{'0' * 32}/preview").status_code == 404
    with browser.rt.transaction() as session:
        assert session.get(ErasurePreview, request_id) is None


def test_tasks_with_attempts_counts_errors_and_waiting_since(browser: Console) -> None:
    browser.officer("audrey@example.org", "auditor")
    rt = browser.rt
    with rt.transaction() as session:
        request = flow.submit(session, rt, "access", {"email": [ANN]})
        flow.mark_verified(session, rt, request, actor="operator:test", method="out-of-band")
        request_id = request.id
    with rt.transaction() as session:
        tasks = {t.connector: t for t in session.scalars(
            select(Task).where(Task.request_id == request_id))}
        assert set(tasks) == {"crm", "broken", "phones"}
        waiting = tasks["broken"]
        waiting.attempts, waiting.last_error = 3, "store unavailable (scripted)"
        waiting.retrying_since = START - timedelta(minutes=20)
        waiting.not_before = START + timedelta(minutes=5)
        done = tasks["crm"]
        done.status, done.attempts, done.reclaims, done.record_count = "succeeded", 1, 2, 3
    page = browser.get(f"/console/requests/{request_id}").text
    assert "Erasure preview" not in page
    cells = re.findall(r"<tr>\s*<td>(\w+)</td>\s*<td>(\w+)</td>\s*<td>(\w+)</td>\s*<td>([^<]*)"
                       r"</td>\s*<td>(\d+)</td>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>", page)
    assert cells == [
        ("broken", "export", "pending", "3", "0", "store unavailable (scripted)",
         "since 2026-03-02 08:40:00 UTC, next try 09:05:00 UTC"),
        ("crm", "export", "succeeded", "1 (taken over 2 times)", "3", "", ""),
        ("phones", "export", "pending", "0", "0", "", ""),
    ]


@pytest.mark.parametrize("path", ["/console/requests/" + "0" * 32, "/console/requests/xyz",
                                  "/console/requests/" + "A" * 32])
def test_an_unknown_request_is_a_404(browser: Console, path: str) -> None:
    browser.officer("audrey@example.org", "auditor")
    page = browser.get(path)
    assert page.status_code == 404 and "Page not found" in page.text


def test_the_page_is_no_store_under_the_strict_csp(browser: Console) -> None:
    browser.officer("audrey@example.org", "auditor")
    request_id = erasure(browser)
    page = browser.get(f"/console/requests/{request_id}")
    assert page.headers["Cache-Control"] == "no-store"
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert "<script" not in page.text and "style=" not in page.text


@pytest.mark.parametrize("kind, value, masked", [
    ("email", "ann@example.org", "a\u2022\u2022\u2022@e\u2022\u2022\u2022.org"),
    ("email", "ann@localhost", "a\u2022\u2022\u2022@l\u2022\u2022\u2022"),
    ("phone", "+442079460958", "+\u2022\u2022\u202258"),
    ("phone", "12345", "\u2022\u2022\u2022"),
    ("customer_id", "C-12345", "C\u2022\u2022\u20225"),
    ("customer_id", "C-1", "\u2022\u2022\u2022"),
])
def test_masking_shows_enough_to_tell_apart_never_the_whole(kind: str, value: str,
                                                            masked: str) -> None:
    assert mask(kind, value) == masked
