"""What admins do in the console: invite, change roles, disable, see the
connectors; each an audit event naming the admin by officer id."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask
from sqlalchemy import select

from dsar.models import AuditEvent, Officer
from tests.console.client import Console
from tests.console.client import Officer as Newcomer


def last_event(console: Console) -> tuple[str, str, dict[str, object]]:
    with console.rt.transaction() as session:
        event = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        assert event is not None
        return event.action, event.actor, json.loads(event.details)


def status_of(console: Console, officer_id: str) -> tuple[str, str]:
    with console.rt.transaction() as session:
        found = session.get(Officer, officer_id)
        assert found is not None
        return found.role, found.status


def test_an_admin_invites_an_officer_who_then_sets_up(console: Console,
                                                      console_app: Flask) -> None:
    boss = console.officer("boss@example.org", "admin")
    form = console.get("/console/officers/new")
    assert form.status_code == 200 and 'name="role"' in form.text
    made = console.post("/console/officers/new", email="new@example.org", role="auditor")
    assert made.status_code == 200
    link = re.search(r'id="setup-link">([^<]+)<', made.text)
    assert link and "/console/setup/" in link.group(1)
    action, actor, details = last_event(console)
    assert (action, actor, details["role"]) == ("officer.created", f"officer:{boss.id}",
                                                "auditor")
    newcomer = Console(console_app, address="192.0.2.20")
    officer = Newcomer("new@example.org", "auditor")
    assert newcomer.set_up(officer, urlsplit(link.group(1)).path).status_code == 200
    assert newcomer.sign_in(officer).status_code == 303
    listed = console.get("/console/officers").text
    assert "new@example.org" in listed and "boss@example.org" in listed


def test_the_invite_form_says_what_is_wrong(console: Console) -> None:
    console.officer("boss@example.org", "admin")
    empty = console.post("/console/officers/new", email="", role="")
    assert empty.status_code == 400
    assert 'href="#email"' in empty.text and 'href="#role-auditor"' in empty.text
    twice = console.post("/console/officers/new", email="boss@example.org", role="admin")
    assert twice.status_code == 400 and "exists already" in twice.text
    bad = console.post("/console/officers/new", email="boss", role="root")
    assert bad.status_code == 400 and "Choose a role" in bad.text


def test_a_role_change_ends_the_officers_sessions(console: Console,
                                                  console_app: Flask) -> None:
    console.officer("boss@example.org", "admin")
    other_browser = Console(console_app, address="192.0.2.30")
    reviewer = other_browser.officer("rita@example.org", "reviewer")
    assert other_browser.get("/console/").status_code == 200
    changed = console.post(f"/console/officers/{reviewer.id}/role", role="auditor")
    assert changed.status_code == 303
    assert status_of(console, reviewer.id) == ("auditor", "active")
    assert other_browser.client.get("/console/").status_code == 303  # signed out
    assert last_event(console)[0] == "officer.role_changed"


def test_disabling_asks_first_then_ends_everything(console: Console,
                                                   console_app: Flask) -> None:
    console.officer("boss@example.org", "admin")
    other_browser = Console(console_app, address="192.0.2.30")
    reviewer = other_browser.officer("rita@example.org", "reviewer")
    ask = console.get(f"/console/officers/{reviewer.id}/disable")
    assert ask.status_code == 200 and "Disable rita@example.org?" in ask.text
    assert status_of(console, reviewer.id) == ("reviewer", "active")  # asking changes nothing
    done = console.post(f"/console/officers/{reviewer.id}/disable")
    assert done.status_code == 303
    assert status_of(console, reviewer.id) == ("reviewer", "disabled")
    assert other_browser.client.get("/console/").status_code == 303
    assert other_browser.sign_in(reviewer).status_code == 401


def test_the_last_admin_cannot_remove_themselves(console: Console) -> None:
    boss = console.officer("boss@example.org", "admin")
    demoted = console.post(f"/console/officers/{boss.id}/role", role="reviewer")
    assert demoted.status_code == 409 and "last active admin" in demoted.text
    gone = console.post(f"/console/officers/{boss.id}/disable")
    assert gone.status_code == 409
    assert status_of(console, boss.id) == ("admin", "active")


def test_an_unknown_officer_is_404(console: Console) -> None:
    console.officer("boss@example.org", "admin")
    assert console.get("/console/officers/" + "f" * 16).status_code == 404
    assert console.get("/console/officers/" + "f" * 40).status_code == 404


def test_connectors_show_their_check_with_secrets_masked(
        database_url: str, tmp_path: Path) -> None:
    from dsar import create_app, migrate
    from dsar.clock import MovableClock
    from tests.console.conftest import START
    from tests.support.app import CHEAP_HASHER, SECRET, write_connectors
    from tests.test_connector_contract import PASSWORD, TOKEN, TYPES, URL

    path = write_connectors(tmp_path / "connectors.toml", {"vault": {
        "type": "vault", "url": URL, "token": TOKEN, "label": "the vault"}})
    app = create_app({"DATABASE_URL": database_url, "SECRET_KEY": SECRET, "TESTING": True,
                      "CONNECTORS": str(path), "EXPORT_DIR": str(tmp_path / "exports")},
                     connector_types=TYPES)
    rt = app.extensions["dsar"]
    rt.clock, rt.password_hasher = MovableClock(START), CHEAP_HASHER
    migrate.upgrade(rt.engine)
    try:
        console = Console(app)
        console.officer("boss@example.org", "admin")
        page = console.get("/console/connectors")
    finally:
        rt.close()
    assert page.status_code == 200
    assert "vault" in page.text and "failed" in page.text and "refused token" in page.text
    assert PASSWORD not in page.text and TOKEN not in page.text
