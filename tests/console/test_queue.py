"""The queue: open requests, the nearest deadline first; filters by status, kind
and due window; search by request id or by email (its keyed hash, never in a
URL); pages of 50; a value that is not one of ours is a 400 with an error summary."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask

from dsar.console import queue as q
from dsar.models import Request
from dsar.models.preview import CLOSED_STATUSES
from dsar.workflow import requests as flow
from tests.console.client import Console
from tests.console.conftest import START

_ROW = re.compile(r'href="/console/requests/([0-9a-f]{32})"')


def add(console: Console, kind: str = "access", status: str = "verified", due_days: float = 20,
        email: str = "someone@example.org") -> str:
    """A request of ``kind`` in ``status``, due ``due_days`` after the clock's now."""
    rt = console.rt
    with rt.transaction() as session:
        request = flow.submit(session, rt, kind, {"email": [email]})
        request.status = status
        request.due_at = rt.now() + timedelta(days=due_days)
        return request.id


def listed(page_text: str) -> list[str]:
    return _ROW.findall(page_text)


@pytest.fixture
def auditor(console: Console) -> Console:
    console.officer_of = console.officer("audrey@example.org", "auditor")  # type: ignore[attr-defined]
    return console


def move_clock(console: Console, **delta: float) -> None:
    """Move the clock (sessions end after 30 idle minutes: sign in again)."""
    officer = console.officer_of  # type: ignore[attr-defined]
    console.clock.advance(**delta)
    assert console.sign_in(officer).status_code == 303


def test_open_requests_overdue_first_with_days_left(auditor: Console) -> None:
    later = add(auditor, due_days=20.5)
    overdue = add(auditor, kind="erasure", status="awaiting_review", due_days=-2.5)
    soon = add(auditor, status="processing", due_days=1.5)
    add(auditor, status="completed", due_days=-30)  # closed: not in the queue
    add(auditor, status="denied", due_days=5)
    page = auditor.get("/console/")
    assert page.status_code == 200
    assert listed(page.text) == [overdue, soon, later]
    assert "overdue by 3 days" in page.text
    assert "1 day left" in page.text and "20 days left" in page.text
    assert "Showing 1 to 3 of 3 requests" in page.text
    move_clock(auditor, days=2)  # the days left follow the clock
    moved = auditor.get("/console/").text
    assert "overdue by 5 days" in moved and "overdue by 1 day<" in moved
    assert "18 days left" in moved


def test_partially_failed_is_open_and_every_closed_state_is_not(auditor: Console) -> None:
    shown = add(auditor, status="partially_failed")
    for status in ("completed", "denied", "expired", "cancelled"):
        add(auditor, status=status)
    assert listed(auditor.get("/console/").text) == [shown]
    assert len(listed(auditor.get("/console/?status=all").text)) == 5
    assert q.CLOSED == {"completed", "denied", "expired", "cancelled"} == set(CLOSED_STATUSES)
    assert "partially_failed" in q.OPEN and not q.CLOSED & set(q.OPEN)


def test_filters_by_status_kind_and_due_window(auditor: Console) -> None:
    review = add(auditor, kind="erasure", status="awaiting_review", due_days=2.5)
    access = add(auditor, kind="access", status="processing", due_days=6.5)
    late = add(auditor, kind="access", status="verified", due_days=-0.5)
    far = add(auditor, kind="erasure", status="verified", due_days=25)
    closed = add(auditor, kind="erasure", status="completed", due_days=1)
    assert listed(auditor.get("/console/?status=awaiting_review").text) == [review]
    assert listed(auditor.get("/console/?kind=erasure").text) == [review, far]
    assert listed(auditor.get("/console/?kind=access").text) == [late, access]
    assert listed(auditor.get("/console/?due=overdue").text) == [late]
    assert listed(auditor.get("/console/?due=3").text) == [late, review]
    assert listed(auditor.get("/console/?due=7").text) == [late, review, access]
    assert listed(auditor.get("/console/?due=30").text) == [late, review, access, far]
    assert listed(auditor.get("/console/?status=completed").text) == [closed]
    assert listed(auditor.get("/console/?kind=erasure&due=7&status=all").text) == [closed,
                                                                                   review]
    none = auditor.get("/console/?status=approved")
    assert none.status_code == 200 and "No requests match these filters" in none.text
    chosen = auditor.get("/console/?kind=erasure&due=7").text
    assert '<option value="erasure" selected>' in chosen
    assert '<option value="7" selected>' in chosen


def search(console: Console, text: str, **filters: str) -> str:
    """The queue's search: posted, answered by a redirect; returns its target."""
    console.get("/console/")
    answer = console.post("/console/search", q=text, **filters)
    assert answer.status_code == 303, answer.text
    return answer.headers["Location"]


def test_search_by_email_goes_through_the_keyed_hash_and_ignores_case_and_spaces(
        auditor: Console) -> None:
    mine = add(auditor, email="Ann.Smith@Example.org", status="completed")
    also = add(auditor, kind="erasure", email="ann.smith@example.org", due_days=3)
    add(auditor, email="bob@example.org")
    target = search(auditor, "  ANN.smith@example.ORG ")
    assert "ann" not in target.lower() and "example" not in target
    digest = auditor.rt.crypto.identifier_digest("email", "ann.smith@example.org")
    assert parse_qs(urlsplit(target).query) == {"subject": [digest]}
    found = auditor.get(target)
    assert found.status_code == 200
    assert listed(found.text) == [also, mine]  # open or closed: a search finds either
    assert "ann.smith" not in found.text.lower()
    assert listed(auditor.get(search(auditor, "ann.smith@example.org", status="completed"))
                  .text) == [mine]
    nobody = auditor.get(search(auditor, "carol@example.org"))
    assert nobody.status_code == 200 and "No request matches this search" in nobody.text


def test_an_email_found_by_discovery_finds_its_request_too(auditor: Console) -> None:
    request_id = add(auditor)
    rt = auditor.rt
    with rt.transaction() as session:
        request = session.get(Request, request_id)
        assert request is not None
        from dsar.workflow.subjects import add_identifiers
        add_identifiers(rt, request, {"email": ["alias@example.org"], "phone": ["+44 1"]},
                        source="connector:crm")
    assert listed(auditor.get(search(auditor, "Alias@example.org")).text) == [request_id]


def test_search_by_request_id(auditor: Console) -> None:
    wanted = add(auditor, status="completed")
    add(auditor)
    target = search(auditor, f" {wanted.upper()} ")
    assert parse_qs(urlsplit(target).query) == {"request": [wanted]}
    assert listed(auditor.get(target).text) == [wanted]
    assert listed(auditor.get(search(auditor, "0" * 32)).text) == []


@pytest.mark.parametrize("text", ["", "   ", "12345", "not an id", "a b@example.org"])
def test_a_search_for_neither_an_id_nor_an_address_says_so(auditor: Console, text: str) -> None:
    auditor.get("/console/")
    answer = auditor.post("/console/search", q=text)
    assert answer.status_code == 400
    assert 'class="error-summary"' in answer.text
    assert '<a href="#q">Enter a request id' in answer.text
    assert 'aria-invalid="true"' in answer.text


def test_a_search_keeps_the_filters_and_starts_at_page_one(auditor: Console) -> None:
    target = search(auditor, "ann@example.org", kind="erasure", due="7", page="3")
    args = parse_qs(urlsplit(target).query)
    assert args["kind"] == ["erasure"] and args["due"] == ["7"] and "page" not in args


def test_pages_of_fifty_and_their_edges(auditor: Console) -> None:
    ids = [add(auditor, due_days=1 + i / 100) for i in range(q.PER_PAGE * 2 + 1)]
    first = auditor.get("/console/")
    assert listed(first.text) == ids[:50]
    assert "Showing 1 to 50 of 101 requests" in first.text and "Page 1 of 3" in first.text
    assert "Previous page" not in first.text and 'href="/console/?page=2"' in first.text
    second = auditor.get("/console/?page=2").text
    assert listed(second) == ids[50:100]
    assert 'href="/console/?page=3"' in second and 'href="/console/"' in second
    last = auditor.get("/console/?page=3").text
    assert listed(last) == ids[100:] and "Showing 101 to 101 of 101" in last
    assert "Next page" not in last
    past = auditor.get("/console/?page=4")
    assert past.status_code == 400 and "There is no page 4: these requests fill 3 pages" \
        in past.text
    kept = auditor.get("/console/?page=2&kind=access").text
    assert 'href="/console/?kind=access&amp;page=3"' in kept


def test_exactly_one_page_has_no_page_links(auditor: Console) -> None:
    for i in range(q.PER_PAGE):
        add(auditor, due_days=1 + i / 100)
    page = auditor.get("/console/").text
    assert len(listed(page)) == 50 and "Page 1 of 1" not in page and "Next page" not in page
    assert auditor.get("/console/?page=2").status_code == 400


def test_an_empty_queue(auditor: Console) -> None:
    page = auditor.get("/console/")
    assert page.status_code == 200 and "No requests match these filters" in page.text
    assert auditor.get("/console/?page=1").status_code == 200
    assert auditor.get("/console/?page=2").status_code == 400


@pytest.mark.parametrize("query, field", [
    ("status=shipped", "status"), ("status=%00", "status"), ("kind=rectification", "kind"),
    ("due=tomorrow", "due"), ("due=-1", "due"), ("page=0", "page"), ("page=-1", "page"),
    ("page=two", "page"), ("page=1.5", "page"), ("page=99999999999999999999", "page"),
    ("page=%D9%A3", "page"), ("request=xyz", "request"), ("request=" + "A" * 32, "request"),
    ("subject=ann@example.org", "subject"), ("subject=" + "0" * 63, "subject"),
])
def test_a_filter_value_not_ours_is_a_400_with_an_error_summary(auditor: Console, query: str,
                                                                 field: str) -> None:
    add(auditor)
    answer = auditor.get(f"/console/?{query}")
    assert answer.status_code == 400
    assert 'class="error-summary"' in answer.text and "There is a problem" in answer.text
    assert q.WRONG[field].replace("'", "&#39;") in answer.text
    assert listed(answer.text) == []
    assert answer.headers["Cache-Control"] == "no-store"
    if field in ("status", "kind", "due"):
        assert f'<a href="#{field}">' in answer.text
        assert f'id="{field}-error"' in answer.text


def test_each_bad_filter_is_named(auditor: Console) -> None:
    answer = auditor.get("/console/?status=x&kind=y&due=z")
    assert answer.status_code == 400
    assert [m for m in re.findall(r'<li><a href="#(\w+)">', answer.text)] == ["status", "kind",
                                                                            "due"]


def test_the_queue_is_for_signed_in_officers_only(console: Console,
                                                  console_app: Flask) -> None:
    add(console)
    answer = console.client.get("/console/?kind=access")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/console/sign-in?next=/console/?kind%3Daccess"
    assert console.client.post("/console/search", data={"q": "x"}).status_code in (303, 400)


def test_days_left_is_counted_from_the_clock(auditor: Console) -> None:
    add(auditor, due_days=0.25)
    assert "0 days left" in auditor.get("/console/").text
    move_clock(auditor, hours=7)
    assert "overdue by 1 day<" in auditor.get("/console/").text
    assert auditor.rt.now() > START
