"""Over HTTP on the three real demo stores: access and erasure as a requester does them.

Form → code from the outbox → verified → completed (polling the status page)
→ the zip, checked against its manifest; then an erasure approved on the CLI
that really changes the CRM database, the Maildir and the Slack export.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import mailbox
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask

from dsar.demo import DemoInfo, seed
from dsar.executor import InProcessExecutor
from dsar.texts import DEFAULTS as T
from tests.portal.journey import Browser

#: the labels the demo's connector file gives its stores (dsar/demo.py)
DEMO_LABELS = {"crm": "Customer accounts and orders", "mail": "Emails with our support team",
               "chat": "Our community chat"}


@pytest.fixture
def demo(tmp_path: Path) -> DemoInfo:
    return seed(tmp_path / "instance", customers=5)


@pytest.fixture
def running(portal_app: Callable[..., Flask], demo: DemoInfo) -> Iterator[Flask]:
    """The demo app with the in-process executor working in the background."""
    app = portal_app(CONNECTORS=str(demo.connector_file))
    with InProcessExecutor(app.extensions["dsar"], 2, poll_seconds=0.05):
        yield app


def _until(browser: Browser, request_id: str, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = browser.status(request_id)
        assert page.status_code == 200
        if text in page.text:
            return page.text
        time.sleep(0.1)
    raise AssertionError(f"status page never said {text!r}")


def _verified(browser: Browser, kind: str, email: str) -> str:
    request_id = browser.start(kind, email)
    assert T["status.verifying"] in browser.status(request_id).text
    assert browser.verify(request_id, browser.outbox.code()).status_code == 303
    return request_id


def test_access_over_http(running: Flask, demo: DemoInfo,
                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    browser, email = Browser(running), demo.emails[0]
    request_id = _verified(browser, "access", email)
    page = _until(browser, request_id, T["status.completed"])
    for store in ("crm", "mail", "chat"):  # by the demo's labels, never by their names
        label = DEMO_LABELS[store]
        assert f'<tr><th scope="row">{label}</th><td>{T["progress.done"]}</td></tr>' in page
        assert f">{store}<" not in page
    status, body, _answer = browser.download(request_id)
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(body)) as bundle:
        members = {name: bundle.read(name) for name in bundle.namelist()}
    manifest = json.loads(members.pop("manifest.json"))
    assert {entry["name"] for entry in manifest["files"]} == set(members)
    for entry in manifest["files"]:
        assert hashlib.sha256(members[entry["name"]]).hexdigest() == entry["sha256"]
    counts = {c["name"]: c["records"] for c in manifest["connectors"]}
    assert set(counts) == {"crm", "mail", "chat"} and all(counts.values()), counts
    assert email.encode() in members["crm.json"]
    logged = "\n".join(r.getMessage() for r in caplog.records).lower()
    assert email not in logged and email.split("@")[0] not in logged


def test_erasure_over_http_with_cli_approval(running: Flask, demo: DemoInfo,
                                             cli: Callable[..., Result]) -> None:
    browser, email = Browser(running), demo.emails[2]
    before = _stores(demo)
    assert email in before["crm"] and email in before["mail"] and email in before["chat"]
    request_id = _verified(browser, "erasure", email)
    assert T["status.awaiting_review"] in browser.status(request_id).text
    approved = cli("requests", "approve", request_id, app_=running)
    assert approved.exit_code == 0, approved.output
    _until(browser, request_id, T["status.completed.erasure"])
    after = _stores(demo)
    assert email not in after["crm"] and email not in after["mail"]
    assert email not in after["chat"]
    for other in (e for e in demo.emails if e != email):
        assert other in after["crm"] and other in after["chat"]
    verified = cli("audit", "verify", app_=running)
    assert verified.exit_code == 0 and "audit chain intact" in verified.output


def _stores(demo: DemoInfo) -> dict[str, set[Any]]:
    """Every address in the customer table, the mailboxes' headers, the chat profiles."""
    with sqlite3.connect(demo.crm) as db:
        crm = {row[0] for row in db.execute("SELECT email FROM customers")}
    db.close()
    addresses: set[str] = set()
    root = mailbox.Maildir(demo.mail, create=False)
    for box in [root, *(root.get_folder(name) for name in root.list_folders())]:
        for message in box:
            headers = [str(v) for k, v in message.items()
                       if k.lower() in ("from", "to", "cc", "reply-to")]
            addresses |= {a.lower() for _, a in getaddresses(headers)}
    users = json.loads((demo.chat / "users.json").read_text())
    chat = {u.get("profile", {}).get("email") for u in users}
    return {"crm": crm, "mail": addresses, "chat": chat}


def test_dsar_run_serves_the_portal(tmp_path: Path) -> None:
    """``make run`` ends in ``dsar run``: it must really serve (under the flask
    CLI, ``app.run()`` would return at once)."""
    env = {**os.environ, "DSAR_INSTANCE_PATH": str(tmp_path / "instance")}
    for name in ("DSAR_DATABASE_URL", "DSAR_CONNECTORS", "DSAR_SMTP_URL"):
        env.pop(name, None)
    dsar = str(Path(sys.executable).parent / "dsar")
    subprocess.run([dsar, "demo", "--customers", "2"], env=env, check=True,
                   capture_output=True, timeout=60)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([dsar, "run", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, page = time.monotonic() + 30, ""
        while time.monotonic() < deadline and server.poll() is None and not page:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer:
                    page = answer.read().decode()
            except OSError:
                time.sleep(0.2)
        assert T["form.title"] in page, f"dsar run did not serve (exit code {server.poll()})"
    finally:
        server.terminate()
        server.wait(10)
