"""An officer's own account in the console, and an admin's reset of an
officer who lost both factors."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import Flask

from tests.console.client import PASSWORD, Console

NEW = "a different long passphrase"


def test_a_new_password_signs_the_officer_out_everywhere(console: Console,
                                                         console_app: Flask) -> None:
    officer = console.officer("dana@example.org", "reviewer")
    elsewhere = Console(console_app, address="192.0.2.44")
    assert elsewhere.sign_in(officer).status_code == 303
    assert console.get("/console/account").status_code == 200
    wrong = console.post("/console/account/password", current="not it at all", new=NEW,
                         confirm=NEW)
    assert wrong.status_code == 400 and "not your current password" in wrong.text
    differ = console.post("/console/account/password", current=PASSWORD, new=NEW,
                          confirm=NEW + "!")
    assert differ.status_code == 400 and "not the same" in differ.text
    short = console.post("/console/account/password", current=PASSWORD, new="short",
                         confirm="short")
    assert short.status_code == 400 and "at least 12" in short.text
    done = console.post("/console/account/password", current=PASSWORD, new=NEW, confirm=NEW)
    assert done.status_code == 303 and done.headers["Location"] == "/console/sign-in"
    assert console.client.get("/console/").status_code == 303
    assert elsewhere.client.get("/console/").status_code == 303
    assert console.sign_in(officer).status_code == 401  # the old password
    assert console.sign_in(officer, password=NEW).status_code == 303


def test_new_recovery_codes_are_shown_once_and_replace_the_old(console: Console) -> None:
    officer = console.officer("dana@example.org", "reviewer")
    refused = console.post("/console/account/recovery-codes", password="wrong password!")
    assert refused.status_code == 400
    page = console.post("/console/account/recovery-codes", password=PASSWORD)
    assert page.status_code == 200 and "Your new recovery codes" in page.text
    codes = re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>", page.text)
    assert len(codes) == 10 and not set(codes) & set(officer.recovery)
    console.client.delete_cookie("dsar_console", path="/console")
    assert console.sign_in(officer, code=officer.recovery[0]).status_code == 401
    assert console.sign_in(officer, code=codes[0]).status_code == 303


def test_an_admin_resets_an_officer_who_lost_their_phone(console: Console,
                                                         console_app: Flask) -> None:
    console.officer("boss@example.org", "admin")
    phone_lost = Console(console_app, address="192.0.2.55")
    rita = phone_lost.officer("rita@example.org", "reviewer")
    ask = console.get(f"/console/officers/{rita.id}/reset")
    assert ask.status_code == 200 and "Reset rita@example.org?" in ask.text
    done = console.post(f"/console/officers/{rita.id}/reset")
    assert done.status_code == 200
    link = re.search(r'id="setup-link">([^<]+)<', done.text)
    assert link is not None
    assert phone_lost.client.get("/console/").status_code == 303  # signed out
    assert phone_lost.sign_in(rita).status_code == 401  # the old factors are gone
    assert phone_lost.set_up(rita, urlsplit(link.group(1)).path).status_code == 200
    assert phone_lost.sign_in(rita).status_code == 303
    again = console.post(f"/console/officers/{rita.id}/disable")
    assert again.status_code == 303
    refused = console.post(f"/console/officers/{rita.id}/reset")
    assert refused.status_code == 409  # a disabled officer is not reset
