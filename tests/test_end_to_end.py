"""The whole engine through the CLI, on the three real demo stores.

Access for a subject found in all three stores yields a bundle with their data
and nothing of other subjects; erasure after approval really changes all three
stores, and only what a hold keeps is found afterwards; the audit chain
verifies; no identifier reaches a log line or the database in clear.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mailbox
import sqlite3
import zipfile
from collections.abc import Callable, Iterator
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import MetaData, select

from dsar.demo import DemoInfo, customers_of, seed
from dsar.runtime import Runtime

CUSTOMERS = 5
PEOPLE = customers_of(CUSTOMERS)
ANN, CAT = PEOPLE[0], PEOPLE[2]  # access for one, erasure for another


@pytest.fixture
def demo(tmp_path: Path) -> DemoInfo:
    return seed(tmp_path / "instance", customers=CUSTOMERS)


@pytest.fixture
def demo_app(make_app: Callable[..., Flask], demo: DemoInfo) -> Flask:
    return make_app(CONNECTORS=str(demo.connector_file))


@pytest.fixture
def run(demo_app: Flask, cli: Callable[..., Result]) -> Callable[..., Result]:
    def invoke(*args: str) -> Result:
        result = cli(*args, app_=demo_app)
        assert result.exit_code == 0, result.output
        return result

    return invoke


@pytest.fixture(autouse=True)
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    for person in PEOPLE:
        for value in (person.email, person.name, person.phone):
            assert value.lower() not in text.lower(), f"{value!r} reached a log line"


def submit(run: Callable[..., Result], kind: str, email: str) -> str:
    return str(json.loads(run("requests", "submit", "--kind", kind, "--email", email,
                              "--verified", "--json").output)["id"])


def show(run: Callable[..., Result], request_id: str) -> dict[str, Any]:
    return dict(json.loads(run("requests", "show", request_id, "--json").output))


def bundle(rt: Runtime, request_id: str) -> dict[str, Any]:
    path = Path(rt.settings["EXPORT_DIR"]) / f"{request_id}.zip"
    with zipfile.ZipFile(path) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    manifest = json.loads(files.pop("manifest.json"))
    for entry in manifest["files"]:
        assert hashlib.sha256(files[entry["name"]]).hexdigest() == entry["sha256"]
    assert {e["name"] for e in manifest["files"]} == set(files)
    records = {name.removesuffix(".json"): json.loads(data)["records"]
               for name, data in files.items() if name.endswith(".json")}
    return {"manifest": manifest, "records": records, "raw": b"".join(files.values())}


def mail_parties(fields: dict[str, Any]) -> set[str]:
    headers = [fields.get(h) or "" for h in ("from", "to", "cc", "reply_to")]
    return {address.lower() for _, address in getaddresses(headers)}


def test_access_bundle_holds_the_subject_and_nobody_else(demo_app: Flask,
                                                         run: Callable[..., Result]) -> None:
    rt = demo_app.extensions["dsar"]
    request_id = submit(run, "access", ANN.email.upper())  # case does not matter
    run("requests", "process", "--timeout", "60")
    assert show(run, request_id)["status"] == "completed"
    made = bundle(rt, request_id)
    counts = {c["name"]: c["records"] for c in made["manifest"]["connectors"]}
    assert set(counts) == {"crm", "mail", "chat"} and all(counts.values()), counts
    assert made["manifest"]["identifiers"] == [
        {"kind": "email", "value": ANN.email, "source": "requester"}]
    for record in made["records"]["crm"]:
        owner = {record["fields"].get(c) for c in ("email", "customer_email", "billing_email")}
        assert ANN.email in owner
    for record in made["records"]["mail"]:
        assert ANN.email in mail_parties(record["fields"])
    profiles = [r for r in made["records"]["chat"] if r["category"] == "profile"]
    assert len(profiles) == 1 and profiles[0]["fields"]["profile"]["email"] == ANN.email
    raw = made["raw"].decode("utf-8").lower()
    for other in PEOPLE[1:]:
        assert other.phone not in raw and other.city.lower() not in raw.replace(
            ANN.city.lower(), "")
        for record in made["records"]["mail"]:
            if other.email in mail_parties(record["fields"]):
                assert ANN.email in mail_parties(record["fields"])  # shared, not theirs alone


def test_erasure_after_approval_changes_all_three_stores(
        demo_app: Flask, demo: DemoInfo, run: Callable[..., Result]) -> None:
    rt = demo_app.extensions["dsar"]
    before = store_snapshot(demo)
    request_id = submit(run, "erasure", CAT.email)
    assert show(run, request_id)["status"] == "awaiting_review"
    run("requests", "process", "--timeout", "10")
    assert store_snapshot(demo) == before  # nothing happens before approval
    run("requests", "approve", request_id)
    run("requests", "process", "--timeout", "60")
    view = show(run, request_id)
    assert view["status"] == "completed", view
    assert {t["status"] for t in view["tasks"]} == {"succeeded"}

    after = store_snapshot(demo)
    assert CAT.email not in after["crm_emails"]          # customer row: identifiers nulled
    assert after["crm_rows"] == before["crm_rows"]        # ... the row stays for statistics
    assert CAT.email not in after["order_emails"]         # orders deleted
    assert CAT.email in after["invoice_emails"]           # invoices kept: tax-records hold
    assert CAT.email not in after["mail_addresses"]       # sent mail gone, address redacted
    assert after["mail_count"] < before["mail_count"]
    assert CAT.email not in after["chat_emails"]          # profile blanked
    assert after["chat_messages"] < before["chat_messages"]
    for other in (p for p in PEOPLE if p is not CAT):
        assert other.email in after["crm_emails"] and other.email in after["chat_emails"]

    # find again: only what the hold keeps is left
    again = submit(run, "access", CAT.email)
    run("requests", "process", "--timeout", "60")
    records = bundle(rt, again)["records"]
    assert records["mail"] == [] and records["chat"] == []
    assert {r["collection"] for r in records["crm"]} == {"invoices"}

    result = run("audit", "verify")
    assert "audit chain intact" in result.output


def test_nothing_personal_in_the_database_in_clear(demo_app: Flask,
                                                   run: Callable[..., Result]) -> None:
    rt = demo_app.extensions["dsar"]
    submit(run, "access", ANN.email)
    erasure = submit(run, "erasure", CAT.email)
    run("requests", "approve", erasure)
    run("requests", "process", "--timeout", "60")
    metadata = MetaData()
    metadata.reflect(rt.engine)
    dump = []
    with rt.engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                dump += [v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row]
    text = "\n".join(dump).lower()
    assert len(dump) > 50
    for person in PEOPLE:
        for value in (person.email, person.name, person.phone, person.email.split("@")[0]):
            assert value.lower() not in text, f"{value!r} stored in clear"


def store_snapshot(demo: DemoInfo) -> dict[str, Any]:
    with sqlite3.connect(demo.crm) as db:
        crm = db.execute("SELECT email FROM customers").fetchall()
        orders = db.execute("SELECT customer_email FROM orders").fetchall()
        invoices = db.execute("SELECT billing_email FROM invoices").fetchall()
    addresses: set[str] = set()
    count = 0
    root = mailbox.Maildir(demo.mail, create=False)
    for box in [root, *(root.get_folder(name) for name in root.list_folders())]:
        for message in box:
            count += 1
            headers = [str(v) for k, v in message.items()
                       if k.lower() in ("from", "to", "cc", "reply-to")]
            addresses |= {a.lower() for _, a in getaddresses(headers)}
    users = json.loads((demo.chat / "users.json").read_text())
    messages = sum(len(json.loads(day.read_text())) for day in demo.chat.glob("*/*.json"))
    return {"crm_emails": {r[0] for r in crm}, "crm_rows": len(crm),
            "order_emails": {r[0] for r in orders}, "invoice_emails": {r[0] for r in invoices},
            "mail_addresses": addresses, "mail_count": count,
            "chat_emails": {u.get("profile", {}).get("email") for u in users},
            "chat_messages": messages}


def test_officer_sees_the_erasure_plan_before_approving(
        demo_app: Flask, demo: DemoInfo, run: Callable[..., Result]) -> None:
    before = store_snapshot(demo)
    request_id = submit(run, "erasure", CAT.email)
    previews = {p["connector"]: p for p in json.loads(
        run("requests", "plan", request_id, "--json").output)}
    assert set(previews) == {"crm", "mail", "chat"}
    crm = {(g["collection"], g["action"]): g for g in previews["crm"]["groups"]}
    assert crm[("invoices", "keep")]["records"] >= 1
    assert "tax-records" in crm[("invoices", "keep")]["detail"]
    assert crm[("orders", "delete")]["records"] >= 1
    assert previews["mail"]["summary"]["delete"] >= 1
    assert previews["chat"]["summary"]["delete"] >= 1
    text = run("requests", "plan", request_id).output
    assert "invoices" in text and "keep" in text
    assert CAT.email not in text
    assert store_snapshot(demo) == before  # nothing changed
    assert show(run, request_id)["status"] == "awaiting_review"
