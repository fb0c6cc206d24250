"""Identity expansion: connectors report further identifiers until nothing new."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select

from dsar.models import AuditEvent, Task
from dsar.runtime import Runtime
from dsar.workflow import requests as flow
from dsar.workflow.preview import preview_erasure
from tests.support.engine_connectors import Script
from tests.test_engine import process, status, submit

EMAIL, PHONE, CUSTOMER = "ann@example.org", "+447700900001", "c-17"


def stores(scripts: dict[str, Script]) -> dict[str, dict[str, Any]]:
    """crm knows Ann's phone; billing maps the phone to a customer id;
    phonebook is keyed by phone; tickets by customer id."""
    for name in ("crm", "billing", "phonebook", "tickets"):
        scripts[name] = Script()
    scripts["crm"].seed(EMAIL, 1, "contacts")
    scripts["crm"].links[EMAIL] = {"phone": {PHONE}}
    scripts["billing"].links[PHONE] = {"customer_id": {CUSTOMER}}
    scripts["phonebook"].seed(PHONE, 2, "calls")
    scripts["phonebook"].seed("+447700900999", 1, "calls")  # someone else
    scripts["tickets"].seed(CUSTOMER, 3, "tickets")
    return {
        "crm": {"type": "discovering", "script": "crm", "kinds": ["email"]},
        "billing": {"type": "discovering", "script": "billing", "kinds": ["phone"]},
        "phonebook": {"type": "scripted", "script": "phonebook", "kinds": ["phone"]},
        "tickets": {"type": "scripted", "script": "tickets", "kinds": ["customer_id"]},
    }


def manifest(rt: Runtime, request_id: str) -> dict[str, Any]:
    path = Path(rt.settings["EXPORT_DIR"]) / f"{request_id}.zip"
    with zipfile.ZipFile(path) as zf:
        return dict(json.loads(zf.read("manifest.json")))


def test_email_expands_to_phone_and_customer_id(make_app: Callable[..., Flask],
                                                scripts: dict[str, Script]) -> None:
    rt = make_app(stores(scripts)).extensions["dsar"]
    request_id = submit(rt, "access", EMAIL)
    process(rt)
    assert status(rt, request_id) == "completed"
    made = manifest(rt, request_id)
    assert {c["name"]: c["records"] for c in made["connectors"]} == {
        "billing": 0, "crm": 1, "phonebook": 2, "tickets": 3}
    assert sorted((i["kind"], i["value"], i["source"]) for i in made["identifiers"]) == [
        ("customer_id", CUSTOMER, "connector:billing"),
        ("email", EMAIL, "requester"),
        ("phone", PHONE, "connector:crm")]
    # rounds until every discoverer has seen every identifier: {email} -> +phone
    # -> +customer id -> nothing new
    assert 2 <= scripts["crm"].calls.count("discover") <= 3
    with rt.transaction() as session:
        events = session.scalars(select(AuditEvent).where(
            AuditEvent.request_id == request_id)).all()
        tasks = session.scalars(select(Task).where(Task.request_id == request_id)).all()
    actions = [e.action for e in events]
    assert 1 <= actions.count("discovery.round") <= 2  # depends on which worker is first
    assert actions.count("discovery.completed") == 1
    text = json.dumps([e.details for e in events])
    assert PHONE not in text and CUSTOMER not in text  # digests only
    assert {t.identifiers_seen for t in tasks} == {3}


def test_erasure_reaches_stores_keyed_by_discovered_identifiers(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    rt = make_app(stores(scripts), ERASURE_REVIEW=False).extensions["dsar"]
    request_id = submit(rt, "erasure", EMAIL)
    process(rt)
    assert status(rt, request_id) == "completed"
    assert scripts["phonebook"].records[PHONE] == []
    assert len(scripts["phonebook"].records["+447700900999"]) == 1
    assert scripts["tickets"].records[CUSTOMER] == []


def test_expansion_stops_at_the_cap(make_app: Callable[..., Flask],
                                    scripts: dict[str, Script]) -> None:
    rt = make_app(stores(scripts), DISCOVERY_MAX_IDENTIFIERS=2).extensions["dsar"]
    request_id = submit(rt, "access", EMAIL)
    process(rt)
    made = manifest(rt, request_id)
    assert sorted(i["kind"] for i in made["identifiers"]) == ["email", "phone"]


def test_a_late_discovery_reruns_work_that_ran_without_it(
        make_app: Callable[..., Flask], scripts: dict[str, Script], cli: Any) -> None:
    app = make_app(stores(scripts), TASK_RETRY_WINDOW_HOURS=1e-9)  # fail at the first error
    rt = app.extensions["dsar"]
    scripts["billing"].fail_times = 1  # billing's discovery fails once
    request_id = submit(rt, "access", EMAIL)
    process(rt)
    assert status(rt, request_id) == "partially_failed"
    assert manifest_missing(rt, request_id)
    result = cli("requests", "retry", request_id, app_=app)
    assert result.exit_code == 0, result.output
    process(rt)
    assert status(rt, request_id) == "completed"
    counts = {c["name"]: c["records"] for c in manifest(rt, request_id)["connectors"]}
    assert counts["tickets"] == 3  # reached through the identifier found on retry


def manifest_missing(rt: Runtime, request_id: str) -> bool:
    return not (Path(rt.settings["EXPORT_DIR"]) / f"{request_id}.zip").exists()


def test_subject_identifiers_are_encrypted(make_app: Callable[..., Flask],
                                           scripts: dict[str, Script]) -> None:
    rt = make_app(stores(scripts)).extensions["dsar"]
    request_id = submit(rt, "access", EMAIL)
    process(rt)
    with rt.transaction() as session:
        request = flow.get(session, request_id)
        blobs = b"".join(i.value_ct for i in request.identifiers)
    assert PHONE.encode() not in blobs and CUSTOMER.encode() not in blobs


def test_real_connectors_email_to_phone(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """The CRM row found by email carries a phone; the chat archive knows the
    person only by that phone (their chat profile has a private address)."""
    import sqlite3

    crm = tmp_path / "crm.sqlite"
    with sqlite3.connect(crm) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT, phone TEXT)")
        db.executemany("INSERT INTO customers VALUES (?, ?, ?)",
                       [(1, EMAIL, "+44 7700 900001"), (2, "bob@example.org", "+447700900002")])
    chat = tmp_path / "chat"
    (chat / "general").mkdir(parents=True)
    users = [{"id": "U1", "name": "ann", "profile": {"email": "ann.private@example.net",
                                                      "phone": "+447700900001"}},
             {"id": "U2", "name": "bob", "profile": {"email": "bob@example.org",
                                                      "phone": "+447700900002"}}]
    (chat / "users.json").write_text(json.dumps(users))
    (chat / "channels.json").write_text(json.dumps([{"id": "C1", "name": "general"}]))
    (chat / "general" / "2026-01-05.json").write_text(json.dumps([
        {"type": "message", "user": "U1", "text": "hello from Ann", "ts": "1.0"},
        {"type": "message", "user": "U2", "text": "hello from Bob", "ts": "2.0"}]))
    connectors = {
        "crm": {"type": "sql", "url": f"sqlite:///{crm}", "tables": [
            {"name": "customers", "identity": {"email": "email", "phone": "phone"},
             "erase": "delete", "discover": True}]},
        "chat": {"type": "slack_export", "path": str(chat)},
    }
    app = make_app(connectors, ERASURE_REVIEW=False)
    rt = app.extensions["dsar"]
    with rt.transaction() as session:  # the officer's preview already follows the phone
        pending = flow.submit(session, rt, "erasure", {"email": [EMAIL]})
        previews = {p["connector"]: p for p in preview_erasure(session, rt, pending,
                                                                actor="officer:test")}
    assert previews["chat"]["summary"]["delete"] == 1  # Ann's message, found by phone
    assert previews["crm"]["summary"]["delete"] == 1
    request_id = submit(rt, "access", EMAIL)
    process(rt)
    assert status(rt, request_id) == "completed"
    made = manifest(rt, request_id)
    assert ("phone", "+447700900001", "connector:crm") in {
        (i["kind"], i["value"], i["source"]) for i in made["identifiers"]}
    assert {c["name"]: c["records"] for c in made["connectors"]} == {"chat": 2, "crm": 1}

    erasure = submit(rt, "erasure", EMAIL)
    process(rt)
    assert status(rt, erasure) == "completed"
    day = json.loads((chat / "general" / "2026-01-05.json").read_text())
    assert [m["user"] for m in day] == ["U2"]
    with sqlite3.connect(crm) as db:
        assert db.execute("SELECT id FROM customers").fetchall() == [(2,)]
