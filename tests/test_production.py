"""The production layout, for real: gunicorn (2 processes) serving wsgi.py,
one ``dsar worker``, PostgreSQL, Redis for rate limits, an SMTP server; one
access and one erasure driven through the JSON API as an integrator would."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dsar.connector import Subject
from dsar.demo import seed
from dsar.registry import load_connectors
from tests.support.redis import RedisDb
from tests.support.servers import free_port
from tests.support.smtp import SmtpServer, smtp_server  # noqa: F401
from tests.support.workers import DSAR

ROOT = Path(__file__).resolve().parents[1]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


class Layout:
    def __init__(self, tmp: Path, env: dict[str, str], port: int, smtp: SmtpServer) -> None:
        self.tmp, self.env, self.port, self.smtp = tmp, env, port, smtp
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> None:
        self.procs.append(subprocess.Popen(
            list(args), cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True))

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             token: str | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json",
                     **({"Authorization": f"Bearer {token}"} if token else {})})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def code_for(self, email: str, seen: int) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            mails = [m for m in self.smtp.received[seen:] if m["To"] == email]
            if mails:
                found = re.search(r"^\s*(\d{6})\s*$", mails[-1].get_content(), re.MULTILINE)
                assert found, "no code in the mail"
                return found.group(1)
            time.sleep(0.1)
        raise AssertionError("the worker sent no code")

    def journey(self, kind: str, email: str) -> tuple[str, str]:
        seen = len(self.smtp.received)
        status, body = self.call("POST", "/api/v1/requests", {"kind": kind, "email": email})
        assert status == 202, body
        made = json.loads(body)
        status, body = self.call("POST", f"/api/v1/requests/{made['id']}/verify",
                                 {"code": self.code_for(email, seen)}, made["status_token"])
        assert status == 200, body
        # the token used before verification stops working: the verifier's is new
        assert self.call("GET", f"/api/v1/requests/{made['id']}",
                         token=made["status_token"])[0] == 404
        return made["id"], json.loads(body)["status_token"]

    def wait_status(self, request_id: str, token: str, wanted: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, body = self.call("GET", f"/api/v1/requests/{request_id}", token=token)
            assert status == 200, body
            document: dict[str, Any] = json.loads(body)
            if document["status"] == wanted:
                return document
            time.sleep(0.2)
        raise AssertionError(f"{request_id} never became {wanted}: {document['status']}")

    def stop(self) -> list[tuple[int | None, str]]:
        ended = []
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, _ = proc.communicate()
            ended.append((proc.returncode, out))
        return ended


@pytest.fixture
def layout(tmp_path: Path, pg_url: str, redis_db: RedisDb,
           smtp_server: SmtpServer) -> Iterator[Layout]:  # noqa: F811
    demo = seed(tmp_path / "instance")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSAR_")}
    env.update({"DSAR_ENV": "production", "DSAR_SECRET_KEY": "production-test-" + "k" * 40,
                "DSAR_DATABASE_URL": pg_url, "DSAR_CONNECTORS": str(demo.connector_file),
                "DSAR_SMTP_URL": smtp_server.url, "DSAR_RATELIMIT_STORAGE_URI": redis_db.url,
                "DSAR_EXPORT_DIR": str(tmp_path / "exports"),
                # counters outlive the test in the shared Redis database: room for reruns
                **{f"DSAR_RATE_LIMIT_{name}": "100000 per hour"
                   for name in ("SUBMIT", "VERIFY", "RESEND")},
                "DSAR_INSTANCE_PATH": str(tmp_path / "instance")})
    port = free_port()
    made = Layout(tmp_path, env, port, smtp_server)
    migrated = subprocess.run([DSAR, "db", "upgrade"], env=env, capture_output=True,
                              text=True, timeout=60, check=False)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    made.start(GUNICORN, "--workers", "2", "--bind", f"127.0.0.1:{port}", "wsgi:app")
    made.start(DSAR, "worker", "--grace", "5")
    deadline = time.monotonic() + 30
    while True:
        try:
            if made.call("GET", "/")[0] == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "gunicorn did not answer"
        time.sleep(0.2)
    made.demo = demo  # type: ignore[attr-defined]
    yield made
    made.stop()


def test_production_layout_answers_an_access_and_an_erasure(layout: Layout) -> None:
    demo = layout.demo  # type: ignore[attr-defined]
    asker, eraser = demo.emails[0], demo.emails[1]
    request_id, token = layout.journey("access", asker)
    document = layout.wait_status(request_id, token, "completed")
    assert document["export"]["available"]
    status, body = layout.call("GET", f"/api/v1/requests/{request_id}/export", token=token)
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        counts = {c["name"]: c["records"] for c in json.loads(zf.read("manifest.json"))
                  ["connectors"]}
    assert counts and all(counts.values()), counts

    request_id, token = layout.journey("erasure", eraser)
    layout.wait_status(request_id, token, "awaiting_review")
    approved = subprocess.run([DSAR, "requests", "approve", request_id],
                              env=layout.env, capture_output=True, text=True, timeout=60,
                              check=False)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    layout.wait_status(request_id, token, "completed")
    connectors = load_connectors(str(demo.connector_file))
    subject = Subject({"email": [eraser]})
    try:  # only what a legal hold keeps is left
        for connector in connectors.values():
            left = {r.ref for r in connector.find(subject)}
            assert left <= connector.plan_erasure(subject).kept(), (connector.name, left)
    finally:
        for connector in connectors.values():
            connector.close()

    ended = layout.stop()
    assert [code for code, _ in ended] == [0, 0], ended
    verified = subprocess.run([DSAR, "audit", "verify"], env=layout.env,
                              capture_output=True, text=True, timeout=60, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
