"""``dsar demo``: the seeded stores, their connector file, idempotence, the command."""

from __future__ import annotations

import json
import mailbox
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from email import policy
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.cli import ScriptInfo

from dsar.cli import main
from dsar.connector import Action, Capability, Connector, Subject
from dsar.demo import DemoError, DemoInfo, seed
from dsar.registry import load_connectors, load_hold_texts


@pytest.fixture
def demo(tmp_path: Path) -> DemoInfo:
    return seed(tmp_path / "instance")


@pytest.fixture
def connectors(demo: DemoInfo) -> Iterator[dict[str, Connector]]:
    loaded = load_connectors(str(demo.connector_file))
    yield loaded
    for connector in loaded.values():
        connector.close()


def crm_rows(info: DemoInfo, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(info.crm)) as conn:
        return conn.execute(sql).fetchall()


def crm_emails(info: DemoInfo) -> set[str]:
    return {row[0] for row in crm_rows(info, "SELECT email FROM customers")}


def mail_messages(info: DemoInfo) -> dict[str, list[bytes]]:
    """Folder name → its messages (sorted)."""
    root = mailbox.Maildir(str(info.mail), factory=None, create=False)
    folders = {"INBOX": root, **{name: root.get_folder(name) for name in root.list_folders()}}
    return {name: sorted(box.get_bytes(key) for key in box.iterkeys())
            for name, box in folders.items()}


def mail_headers(info: DemoInfo) -> dict[str, list[dict[str, list[str]]]]:
    """Folder name → the address headers of each message."""
    parser = BytesHeaderParser(policy=policy.default)
    found: dict[str, list[dict[str, list[str]]]] = {}
    for name, messages in mail_messages(info).items():
        for raw in messages:
            msg = parser.parsebytes(raw)
            found.setdefault(name, []).append({
                h: [a.lower() for _, a in getaddresses([str(v) for v in msg.get_all(h, [])])]
                for h in ("From", "To", "Cc")})
    return found


def mail_addresses(info: DemoInfo) -> set[str]:
    return {a for msgs in mail_headers(info).values() for m in msgs for v in m.values() for a in v}


def chat_emails(info: DemoInfo) -> set[str]:
    users = json.loads((info.chat / "users.json").read_text("utf-8"))
    return {u["profile"]["email"] for u in users}


def test_every_customer_is_in_every_store_and_staff_not_in_the_crm(demo: DemoInfo) -> None:
    assert len(demo.emails) == len(set(demo.emails)) == 8 and len(demo.staff) == 2
    customers, staff = set(demo.emails), set(demo.staff)
    assert crm_emails(demo) == customers
    assert {r[0] for r in crm_rows(demo, "SELECT customer_email FROM orders")} == customers
    assert {r[0] for r in crm_rows(demo, "SELECT billing_email FROM invoices")} <= customers
    assert customers | staff <= mail_addresses(demo)
    assert chat_emails(demo) == customers | staff
    for address in customers | staff:
        assert address.endswith(("@example.org", "@example.com"))


def test_the_stores_look_real(demo: DemoInfo) -> None:
    for sub in ("cur", "new", "tmp"):
        assert (demo.mail / sub).is_dir() and (demo.mail / ".Support" / sub).is_dir()
    headers = mail_headers(demo)
    assert set(headers) == {"INBOX", "Support"}
    customers = set(demo.emails)
    assert any(set(m["Cc"]) & customers and set(m["From"]) & customers for m in headers["INBOX"])
    assert any(set(m["From"]) & customers and set(m["To"]) & customers for m in headers["INBOX"])
    assert list((demo.mail / "new").iterdir()), "the newest mail is unread"
    channels = json.loads((demo.chat / "channels.json").read_text("utf-8"))
    for channel in channels:
        days = sorted((demo.chat / channel["name"]).glob("*.json"))
        assert days and all(len(day.stem) == 10 for day in days)
    nulled = crm_rows(demo, "SELECT COUNT(*) FROM customers WHERE city IS NULL")
    assert nulled == [(0,)]


def test_connector_file_loads_and_every_connector_checks_ok(
        connectors: dict[str, Connector]) -> None:
    assert sorted(connectors) == ["chat", "crm", "mail"]
    for name, connector in connectors.items():
        result = connector.check()
        assert result.ok, (name, result.message)


def test_every_demo_store_has_a_label_for_requesters(
        connectors: dict[str, Connector]) -> None:
    """The status page names stores by label; the demo shows how."""
    assert {name: c.label for name, c in connectors.items()} == {
        "crm": "Customer accounts and orders", "mail": "Emails with our support team",
        "chat": "Our community chat"}


def test_every_hold_the_demo_plans_has_a_requester_text(
        demo: DemoInfo, connectors: dict[str, Connector]) -> None:
    """The erasure notice explains each hold in the connector file's words."""
    subject = Subject({"email": {demo.emails[0]}})
    named = {hold for connector in connectors.values()
             if Capability.ERASE in connector.capabilities
             for item in connector.plan_erasure(subject).items for hold in item.holds}
    texts = load_hold_texts(str(demo.connector_file))
    assert named == {"tax-records"} and set(texts) == named
    assert "10 years" in texts["tax-records"]


def test_a_customer_is_found_by_all_three_connectors(
        demo: DemoInfo, connectors: dict[str, Connector]) -> None:
    subject = Subject({"email": {demo.emails[0]}})
    for name, connector in connectors.items():
        records = list(connector.find(subject))
        assert records, name
    collections = {r.collection for r in connectors["crm"].find(subject)}
    assert collections == {"customers", "orders", "invoices"}
    plan = connectors["crm"].plan_erasure(subject)
    kept = [item for item in plan.items if item.action is Action.KEEP]
    assert kept and all(i.collection == "invoices" and "tax-records" in i.detail for i in kept)


def test_seeding_again_keeps_changes_and_force_restores(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    first = seed(instance)
    with closing(sqlite3.connect(first.crm)) as conn, conn:
        conn.execute("DELETE FROM orders WHERE id = 1000")
    again = seed(instance, customers=12)
    assert not again.seeded and again.emails == first.emails
    assert crm_rows(again, "SELECT id FROM orders WHERE id = 1000") == []
    forced = seed(instance, customers=12, force=True)
    assert forced.seeded and len(forced.emails) == 12
    assert crm_rows(forced, "SELECT id FROM orders WHERE id = 1000") == [(1000,)]
    assert not list(instance.glob(".demo*")), "no scratch folder left behind"


def test_edits_to_the_demo_connector_file_survive_a_second_seed(tmp_path: Path) -> None:
    info = seed(tmp_path / "instance")
    edited = info.connector_file.read_text().replace('others = "redact"', 'others = "keep"')
    info.connector_file.write_text(edited)
    seed(tmp_path / "instance")
    assert info.connector_file.read_text() == edited
    seed(tmp_path / "instance", force=True)
    assert 'others = "redact"' in info.connector_file.read_text()
    info.connector_file.unlink()
    seed(tmp_path / "instance")
    assert load_connectors(str(info.connector_file))["mail"].config["others"] == "redact"


def test_seeding_is_deterministic(tmp_path: Path) -> None:
    one, two = seed(tmp_path / "one", customers=23), seed(tmp_path / "two", customers=23)
    assert one.emails == two.emails and len(set(one.emails)) == 23
    for query in ("SELECT * FROM customers", "SELECT * FROM orders", "SELECT * FROM invoices"):
        assert crm_rows(one, query) == crm_rows(two, query)
    chat_one = sorted(p.relative_to(one.chat) for p in one.chat.rglob("*.json"))
    assert chat_one == sorted(p.relative_to(two.chat) for p in two.chat.rglob("*.json"))
    for rel in chat_one:
        assert (one.chat / rel).read_bytes() == (two.chat / rel).read_bytes()
    assert mail_messages(one) == mail_messages(two)


def test_a_foreign_connector_file_is_never_overwritten(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    instance.mkdir()
    own = instance / "connectors.toml"
    own.write_text('[connectors.crm]\ntype = "sql"\n')
    with pytest.raises(DemoError, match="not written by dsar demo"):
        seed(instance)
    assert own.read_text() == '[connectors.crm]\ntype = "sql"\n'
    assert not (instance / "demo").exists()


def test_customer_count_is_bounded(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="between 2 and"):
        seed(tmp_path, customers=1)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_demo_command(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    outbox = tmp_path / "instance" / "outbox"
    app = make_app(OUTBOX_DIR=str(outbox))
    info = ScriptInfo(create_app=lambda: app)
    runner = CliRunner()
    result = runner.invoke(main, ["demo", "--customers", "3"], obj=info, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"verification emails land in {outbox}/" in result.output
    assert str(tmp_path / "instance" / "connectors.toml") in result.output
    assert "ada.quillby@example.org" in result.output
    # an admin for the console, set up from the link printed (the first run only)
    assert "console: set up the demo admin officer@example.org at http://" in result.output
    assert "/console/setup/" in result.output
    again = runner.invoke(main, ["demo"], obj=info, catch_exceptions=False)
    assert "console: a new set-up link for officer@example.org" in again.output
    # the same process now uses the file that did not exist when the app started
    checked = runner.invoke(main, ["connectors", "check"], obj=info, catch_exceptions=False)
    assert checked.exit_code == 0, checked.output
    assert checked.output.count(" ok ") == 3


def _dsar(instance: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).with_name("dsar")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DSAR_")}
    environ["DSAR_INSTANCE_PATH"] = str(instance)
    return subprocess.run([str(command), *args], capture_output=True, text=True,
                          env=environ, timeout=120, check=False)


@pytest.mark.smoke
def test_dsar_demo_then_connectors_check_in_new_processes(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    seeded = _dsar(instance, "demo")
    assert seeded.returncode == 0, seeded.stderr
    assert "outbox" in seeded.stdout
    checked = _dsar(instance, "connectors", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(" ok ") == 3
    again = _dsar(instance, "demo")
    assert again.returncode == 0 and "left as they are" in again.stdout
