"""Real ``dsar`` processes on the demo stores, for crash tests: a worker is
started as ``dsar requests process``, killed with SIGKILL at a fault point
(``DSAR_TEST_FAULTS``, see dsar/faults.py) or at a random moment, and started
again; the stores and the database are then compared with a run nobody
interrupted.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from contextlib import closing
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update

from dsar.database import make_engine, utcnow
from dsar.demo import DemoInfo, seed
from dsar.models import Task, WorkerRole
from dsar.runtime import Runtime
from dsar.workflow import tasks

DSAR = str(Path(sys.executable).with_name("dsar"))
SECRET = "crash-tests-" + "s" * 40


@dataclass
class Instance:
    """One demo instance (SQLite app database, the three demo stores)."""

    path: Path
    info: DemoInfo
    settings: dict[str, str] = field(default_factory=dict)

    def env(self, faults: str = "") -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DSAR_")}
        environ.update({"DSAR_INSTANCE_PATH": str(self.path), "DSAR_SECRET_KEY": SECRET,
                        "DSAR_ERASURE_REVIEW": "false", "DSAR_TASK_RETRY_SECONDS": "0.1",
                        **{f"DSAR_{k}": v for k, v in self.settings.items()}})
        if faults:
            environ["DSAR_TEST_FAULTS"] = faults
        return environ

    def dsar(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DSAR, *args], capture_output=True, text=True,
                              env=self.env(), timeout=timeout, check=False)

    def worker(self, faults: str = "", timeout: float = 60) -> subprocess.Popen[str]:
        """``dsar requests process`` in the background (its own process group)."""
        return subprocess.Popen([DSAR, "requests", "process", "--timeout", str(timeout)],
                                env=self.env(faults), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def submit(self, kind: str, email: str) -> str:
        done = self.dsar("requests", "submit", "--kind", kind, "--email", email, "--verified",
                         "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        return str(json.loads(done.stdout)["id"])

    def show(self, request_id: str) -> dict[str, Any]:
        done = self.dsar("requests", "show", request_id, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    def manifest_counts(self, request_id: str) -> dict[str, int]:
        with zipfile.ZipFile(self.path / "exports" / f"{request_id}.zip") as zf:
            manifest = json.loads(zf.read("manifest.json"))
        return {c["name"]: c["records"] for c in manifest["connectors"]}

    def expire_leases(self) -> None:
        """Move the clock past every lease a killed worker held (its tasks' and
        the housekeeping role's), instead of waiting for them to run out."""
        engine = make_engine(f"sqlite:///{self.path / 'dsar.db'}")
        past = utcnow() - timedelta(seconds=1)
        try:
            with engine.begin() as conn:
                conn.execute(update(Task).where(Task.status == "running")
                             .values(lease_expires_at=past))
                conn.execute(update(WorkerRole).where(WorkerRole.holder.is_not(None))
                             .values(expires_at=past))
        finally:
            engine.dispose()

    def audit_verify(self) -> str:
        done = self.dsar("audit", "verify")
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


def make_instance(path: Path, customers: int = 4, **settings: str) -> Instance:
    info = seed(path, customers=customers)
    instance = Instance(path, info, dict(settings))
    migrated = instance.dsar("db", "upgrade")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    return instance


def finish(proc: subprocess.Popen[str], timeout: float = 90) -> tuple[int, str]:
    """Wait for a worker; returns (exit code, output)."""
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def store_state(info: DemoInfo) -> dict[str, Any]:
    """Everything the demo stores hold, in a form two runs can be compared by:
    the CRM's rows, each mail folder's messages (sorted digests) and every chat
    file's JSON. Stray files (temporaries, duplicates) show up as differences."""
    with closing(sqlite3.connect(info.crm)) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        crm = {t: sorted(map(repr, conn.execute(f'SELECT * FROM "{t}"')))  # noqa: S608
               for t in tables}
    mail: dict[str, list[str]] = {}
    for file in sorted(p for p in info.mail.rglob("*") if p.is_file()):
        folder = str(file.parent.relative_to(info.mail))
        mail.setdefault(folder, []).append(hashlib.sha256(file.read_bytes()).hexdigest())
    chat = {str(p.relative_to(info.chat)): json.loads(p.read_text("utf-8"))
            for p in sorted(info.chat.rglob("*")) if p.is_file()}
    return {"crm": crm, "mail": {k: sorted(v) for k, v in mail.items()}, "chat": chat}


def wait_for(predicate: Any, timeout: float, step: float = 0.02) -> float:
    """Seconds until ``predicate()`` held; raises AssertionError after ``timeout``.
    What a test waits on instead of sleeping."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(step)
    return time.monotonic() - started


def drain(rt: Runtime, worker: str = "w:1") -> int:
    """What the workers would do, in this thread: every runnable task, one at a time,
    oldest first; how many ran."""
    ran = 0
    while tasks.claim_and_run(rt, worker):
        ran += 1
    return ran
