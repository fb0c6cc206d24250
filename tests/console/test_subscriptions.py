"""The officer's own mail on their account page ("Mail me"): the weekly
summary and due alerts (dsar/officers/subscriptions.py), saved in one
transaction with ``officer.subscriptions_changed``; bad values are a 400
with the error summary and save nothing; the form needs its CSRF token."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from dsar.models import AuditEvent, Officer
from dsar.officers import subscriptions
from tests.console.client import Console
from tests.console.client import Officer as Browser

PATH = "/console/account/mail"


def saved(console: Console, officer: Browser) -> tuple[bool, int | None]:
    with console.rt.transaction() as session:
        row = session.get(Officer, officer.id)
        assert row is not None
        return row.weekly_summary, row.due_alert_days


def events(console: Console) -> list[tuple[str, dict[str, object]]]:
    with console.rt.transaction() as session:
        return [(actor, json.loads(details)) for actor, details in session.execute(
            select(AuditEvent.actor, AuditEvent.details)
            .where(AuditEvent.action == "officer.subscriptions_changed")
            .order_by(AuditEvent.seq))]


def checked(page: str) -> bool:
    box = re.search(r'<input id="weekly_summary"[^>]*>', page)
    assert box is not None, "no weekly summary checkbox"
    return " checked" in box.group(0)


def selected(page: str) -> str:
    chosen = re.findall(r'<option value="([^"]*)" selected>', page)
    assert len(chosen) == 1, chosen
    return chosen[0]


@pytest.fixture
def dana(console: Console) -> Browser:
    return console.officer("dana@example.org", "auditor")


def test_the_form_shows_the_choices_off_at_first(console: Console, dana: Browser) -> None:
    page = console.get("/console/account")
    assert page.status_code == 200
    assert "Mail me" in page.text and f'action="{PATH}"' in page.text
    assert not checked(page.text) and selected(page.text) == "off"
    options = re.findall(r'<option value="([^"]*)"', page.text)
    assert options == ["off", "1", "3", "7", "14"]
    assert saved(console, dana) == (False, None)


def test_saving_records_one_event_and_shows_the_new_values(console: Console,
                                                           dana: Browser) -> None:
    console.get("/console/account")
    done = console.post(PATH, weekly_summary="yes", due_alert_days="3")
    assert done.status_code == 303 and done.headers["Location"] == "/console/account"
    assert saved(console, dana) == (True, 3)
    page = console.get("/console/account")
    assert ("Your mail is saved: the weekly summary every 7 days; due alerts 3 days before "
            "the due date.") in page.text
    assert checked(page.text) and selected(page.text) == "3"
    assert events(console) == [(f"officer:{dana.id}", {"officer": dana.id,
                                                      "weekly_summary": True,
                                                      "due_alert_days": 3})]
    same = console.post(PATH, weekly_summary="yes", due_alert_days="3")
    assert same.status_code == 303
    assert "Nothing changed" in console.get("/console/account").text
    assert len(events(console)) == 1  # nothing changed: no event
    off = console.post(PATH, due_alert_days="off")  # the box unticked: not sent
    assert off.status_code == 303
    assert saved(console, dana) == (False, None)
    page = console.get("/console/account")
    assert "Your mail is saved: no weekly summary; no due alerts." in page.text
    assert not checked(page.text) and selected(page.text) == "off"
    assert events(console)[-1][1] == {"officer": dana.id, "weekly_summary": False,
                                      "due_alert_days": None}
    for _, details in events(console):
        assert "dana" not in json.dumps(details)


@pytest.mark.parametrize("form", [
    {"weekly_summary": "yes", "due_alert_days": "5"},
    {"weekly_summary": "yes", "due_alert_days": ""},
    {"weekly_summary": "yes"},
    {"weekly_summary": "yes", "due_alert_days": "03"},
    {"weekly_summary": "yes", "due_alert_days": "-1"},
    {"weekly_summary": "on", "due_alert_days": "7"},
    {"weekly_summary": "true", "due_alert_days": "off"},
])
def test_bad_values_are_a_400_and_save_nothing(console: Console, dana: Browser,
                                               form: dict[str, str]) -> None:
    console.get("/console/account")
    refused = console.post(PATH, **form)
    assert refused.status_code == 400
    assert 'class="error-summary"' in refused.text and "There is a problem" in refused.text
    field = ("due_alert_days" if form.get("due_alert_days") not in ("off", "7")
             else "weekly_summary")
    assert f'<a href="#{field}">' in refused.text
    assert f'id="{field}-error"' in refused.text and 'aria-invalid="true"' in refused.text
    assert saved(console, dana) == (False, None)
    assert events(console) == []


def test_the_form_needs_its_csrf_token(console: Console, dana: Browser) -> None:
    console.get("/console/account")
    for data in ({"weekly_summary": "yes", "due_alert_days": "7"},
                 {"weekly_summary": "yes", "due_alert_days": "7", "csrf_token": "forged"}):
        refused = console.client.post(PATH, data=data)
        assert refused.status_code == 400
    assert saved(console, dana) == (False, None)
    assert events(console) == []


def test_signed_out_the_form_sends_to_sign_in(console: Console, dana: Browser) -> None:
    console.post("/console/sign-out")
    answer = console.post(PATH, weekly_summary="yes", due_alert_days="7")
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/console/sign-in")
    assert saved(console, dana) == (False, None)


def test_the_mails_links_are_console_pages_an_officer_opens(console: Console,
                                                            dana: Browser) -> None:
    from dsar.workflow import requests as flow

    with console.rt.transaction() as session:
        request = flow.submit(session, console.rt, "access", {"email": ["zoe@example.net"]})
        session.flush()
        request.due_at = console.rt.now() + timedelta(hours=12)
        request_id = request.id
    console.post(PATH, weekly_summary="yes", due_alert_days="1")
    assert subscriptions.send_due(console.rt) == 2
    paths = [subscriptions.DASHBOARD_PATH, subscriptions.QUEUE_PATH,
             subscriptions.ACCOUNT_PATH, subscriptions.REQUEST_PATH.format(id=request_id)]
    for path in paths:
        assert console.get(path).status_code == 200, path
