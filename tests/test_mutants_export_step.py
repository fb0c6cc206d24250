"""dsar/workflow/export_step.py where `make mutate` found it loose: what the bundle is built
from (this request's succeeded exports only), the time it carries, what its release
records, why an incomplete one is not released, where the crash tests' fault points sit,
and what housekeeping removes from the export directory and what it leaves."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from dsar import faults
from dsar.clock import MovableClock
from dsar.models import ExportBundle, Request, Task
from dsar.runtime import Runtime
from dsar.workflow import export_step
from dsar.workflow import requests as flow
from dsar.workflow.bundle import safe_name
from tests.support.engine_connectors import Script
from tests.test_engine import BOB, events, submit, two_stores
from tests.test_export_step import process

START = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def shop(make_app: Callable[..., Flask], scripts: dict[str, Script]) -> Runtime:
    """crm and mail, each holding three records of Alice and two of Bob; the clock stands."""
    rt: Runtime = make_app(two_stores(scripts)).extensions["dsar"]
    rt.clock = MovableClock(START)
    return rt


def received(rt: Runtime, session: Session) -> Request:
    request = flow.submit(session, rt, "access", {"email": ["a@example.org"]})
    session.flush()
    return request


def test_the_release_records_the_bundle_as_built_at_the_runtimes_time(shop: Runtime) -> None:
    """The manifest and every member carry the runtime's clock; the bundle's row and
    ``request.completed`` name its file, size, hash and records per store; no downloads yet."""
    request_id = submit(shop)
    process(shop)
    path = Path(shop.settings["EXPORT_DIR"]) / f"{request_id}.zip"
    data = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        stamps = {info.date_time for info in zf.infolist()}
    assert manifest["generated_at"] == START.isoformat()
    assert stamps == {START.timetuple()[:6]}
    digest = hashlib.sha256(data).hexdigest()
    with shop.transaction() as session:
        made = session.get(ExportBundle, request_id)
        assert made is not None
        assert (made.filename, made.size, made.sha256, made.download_count) == \
            (path.name, len(data), digest, 0)
    [completed] = events(shop, request_id, "request.completed")
    assert completed == {"from": "processing", "records": 6, "bundle_sha256": digest,
                         "bundle_size": len(data), "bundle_records": {"crm": 3, "mail": 3}}


def test_the_bundle_is_built_from_this_requests_succeeded_exports_only(shop: Runtime) -> None:
    """Bob's request and the bundle step itself are not part of Alice's bundle; a task
    recorded without a part's name (an older result, or none) reads its store's name."""
    alice = submit(shop)
    submit(shop, email=BOB)
    process(shop)
    with shop.transaction() as session:
        request = flow.get(session, alice)
        job = export_step.job_for(session, shop, request)
        recorded = {t.connector: json.loads(t.result or "{}").get("part")
                    for t in session.scalars(select(Task).where(Task.request_id == alice,
                                                                Task.step == "export"))}
        assert job.parts == recorded and set(recorded) == {"crm", "mail"}
        assert job.expected == {"crm": 3, "mail": 3}
        old = Task(connector="Old CRM", step="export", status="succeeded", record_count=1,
                   result=None)
        job = export_step.job_for(session, shop, request, [old])
        assert (job.parts, job.expected) == ({"Old CRM": safe_name("Old CRM")}, {"Old CRM": 1})
    assert export_step.mismatched(Task(result=None)) == []


def test_a_bundle_short_of_what_the_tasks_reported_is_not_released_and_says_why(
        shop: Runtime) -> None:
    """crm's part is gone (no records), mail staged none although its task reported none:
    both differ from their tasks (mail: not in the bundle at all)."""
    with shop.transaction() as session:
        request = received(shop, session)
        outcome = export_step.build(shop, export_step.BundleJob(
            request, {"crm": "gone"}, {"crm": 3, "mail": 0}, []))
    assert not outcome.ok
    assert outcome.result == {"mismatched": ["crm", "mail"], "counts": {"crm": 0},
                              "expected": {"crm": 3, "mail": 0}}
    assert outcome.error == ("export incomplete: the records staged for crm, mail differ from "
                             "what their tasks reported; not released. Retry runs those "
                             "stores again.")


def test_the_crash_tests_fault_points_follow_the_zip_and_precede_the_parts_removal(
        shop: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/test_crashes.py kills a worker at ``bundle.written`` (the zip is there, not
    released) and at ``bundle.released`` (the parts are still there)."""
    monkeypatch.setitem(faults.ACTIONS, "bundle.written", "raise")
    monkeypatch.setitem(faults.ACTIONS, "bundle.released", "raise")
    export_dir = Path(shop.settings["EXPORT_DIR"])
    with shop.transaction() as session:
        request = received(shop, session)
        with pytest.raises(faults.FaultInjected, match="^bundle.written$"):
            export_step.build(shop, export_step.BundleJob(request, {}, {}, []))
        request_id = request.id
    assert (export_dir / f"{request_id}.zip").is_file()
    parts = export_dir / request_id / "parts"
    assert parts.is_dir()
    with pytest.raises(faults.FaultInjected, match="^bundle.released$"):
        export_step.after_release(shop, request_id)
    assert parts.is_dir()


def test_housekeeping_removes_parts_no_request_needs_and_partial_zips_over_an_hour_old(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts of requests still processing or partially failed stay; those of a completed or
    cancelled request, or of none, go. Whatever else an operator keeps there stays. The
    count is what was removed."""
    export_dir = Path(rt.settings["EXPORT_DIR"])
    export_dir.rmdir()  # made (0700) when the app starts; an operator may remove it
    assert export_step.sweep(rt) == 0
    statuses = ["processing", "partially_failed", "completed", "cancelled"]
    with rt.transaction() as session:
        ids = []
        for state in statuses:
            request = received(rt, session)
            request.status = state
            ids.append(request.id)
    orphan = "f" * 32
    for name in [*ids, orphan, "operator-notes"]:
        (export_dir / name / "parts" / "crm").mkdir(parents=True)
    (export_dir / ("e" * 32)).mkdir()  # a request's directory without parts: not staged
    (export_dir / "keep-me").mkdir()
    now = 1_800_000_000
    for name, age in (("old", 3601), ("hour", 3600), ("fresh", 10)):
        partial = export_dir / f"{name}.zip.partial"
        partial.write_bytes(b"")
        os.utime(partial, (now - age, now - age))
    (export_dir / "done.zip").write_bytes(b"zip")
    monkeypatch.setattr(export_step, "time", SimpleNamespace(time=lambda: float(now)))
    assert export_step.sweep(rt) == 4
    assert sorted(p.name for p in export_dir.iterdir()) == sorted([
        ids[0], ids[1], "e" * 32, "operator-notes", "keep-me", "hour.zip.partial",
        "fresh.zip.partial", "done.zip"])
    assert (export_dir / "operator-notes" / "parts" / "crm").is_dir()
