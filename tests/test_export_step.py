"""The export bundle as a step of its own: complete or not released, built
without holding the app database, invisible to requesters."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from dsar import faults
from dsar.executor import InProcessExecutor
from dsar.models import ExportBundle
from dsar.schemas.requester import RequestRequesterView
from dsar.workflow import export_step
from dsar.workflow import requests as flow
from tests.support.engine_connectors import Script
from tests.test_engine import actions, status, submit, tasks_of, two_stores


def process(rt: Any, timeout: float = 30) -> None:
    with InProcessExecutor(rt, 2, poll_seconds=0.05) as executor:
        assert executor.wait_until_idle(timeout)


def manifest(rt: Any, request_id: str) -> dict[str, int]:
    import zipfile

    with zipfile.ZipFile(Path(rt.settings["EXPORT_DIR"]) / f"{request_id}.zip") as zf:
        made = json.loads(zf.read("manifest.json"))
    return {c["name"]: c["records"] for c in made["connectors"]}


def test_a_part_lost_before_the_build_fails_the_request_and_retry_rebuilds(
        make_app: Callable[..., Flask], scripts: dict[str, Script],
        monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Any]) -> None:
    app = make_app(two_stores(scripts))
    rt = app.extensions["dsar"]
    real_job_for = export_step.job_for
    lost: list[str] = []

    def job_for_after_a_loss(*args: Any) -> export_step.BundleJob:
        job = real_job_for(*args)
        if not lost:  # the crm part vanishes once (a disk problem, an operator)
            part = Path(rt.settings["EXPORT_DIR"]) / job.request.id / "parts" / job.parts["crm"]
            for file in part.glob("*.jsonl"):
                file.unlink()
            lost.append("crm")
        return job

    monkeypatch.setattr(export_step, "job_for", job_for_after_a_loss)
    request_id = submit(rt)
    process(rt)
    assert status(rt, request_id) == "partially_failed"
    bundle_task = next(t for t in tasks_of(rt, request_id) if t.step == "bundle")
    assert bundle_task.status == "failed" and "crm" in (bundle_task.last_error or "")
    with rt.transaction() as session:
        assert session.get(ExportBundle, request_id) is None  # never released
    result = cli("requests", "retry", request_id, app_=app)
    assert result.exit_code == 0, result.output
    process(rt)
    assert status(rt, request_id) == "completed"
    assert manifest(rt, request_id) == {"crm": 3, "mail": 3}
    assert scripts["crm"].calls.count("find") == 2 and scripts["mail"].calls.count("find") == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_no_lock_on_the_app_database_while_the_bundle_is_built(
        make_app: Callable[..., Flask], scripts: dict[str, Script],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite has one writer: a bundle built inside a transaction made every
    other write (a requester's submission) wait for the zip."""
    rt = make_app(two_stores(scripts)).extensions["dsar"]
    monkeypatch.setitem(faults.ACTIONS, "bundle.written", "sleep:3")
    request_id = submit(rt)
    with InProcessExecutor(rt, 1, poll_seconds=0.05) as executor:
        deadline = time.monotonic() + 20
        while not (Path(rt.settings["EXPORT_DIR"]) / f"{request_id}.zip").exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        started = time.monotonic()
        submit(rt)  # a write while the worker sits between the zip and its release
        assert time.monotonic() - started < 1.5
        assert executor.wait_until_idle(30)
    assert status(rt, request_id) == "completed"


def test_requesters_never_see_the_bundle_step(make_app: Callable[..., Flask],
                                              scripts: dict[str, Script]) -> None:
    rt = make_app(two_stores(scripts)).extensions["dsar"]
    request_id = submit(rt)
    process(rt)
    assert "export-bundle" in {t.connector for t in tasks_of(rt, request_id)}
    with rt.transaction() as session:
        view = RequestRequesterView().dump(flow.get(session, request_id))
    assert [p["store"] for p in view["progress"]] == ["crm", "mail"]
    assert actions(rt, request_id)[-1] == "request.completed"


def test_a_rerun_of_a_lost_export_run_never_replaces_the_recorded_part(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    """Each run writes a part of its own; the bundle reads the one the
    recorded result names, whatever else a lost worker left beside it."""
    rt = make_app(two_stores(scripts)).extensions["dsar"]
    request_id = submit(rt)
    process(rt)
    parts = {json.loads(t.result or "{}").get("part") for t in tasks_of(rt, request_id)
             if t.step == "export"}
    assert len(parts) == 2 and all(p and "." in p for p in parts)
    assert not (Path(rt.settings["EXPORT_DIR"]) / request_id).exists()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_disk_error_while_building_is_retried_not_left_to_the_lease(
        make_app: Callable[..., Flask], scripts: dict[str, Script],
        monkeypatch: pytest.MonkeyPatch) -> None:
    rt = make_app(two_stores(scripts), TASK_LEASE_SECONDS=60.0).extensions["dsar"]
    real_build = export_step.bundle.build
    failures: list[int] = []

    def full_disk_once(*args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(1)
            raise OSError(28, "No space left on device")
        return real_build(*args, **kwargs)

    monkeypatch.setattr(export_step.bundle, "build", full_disk_once)
    request_id = submit(rt)
    process(rt, timeout=20)  # not the 60 s lease
    assert status(rt, request_id) == "completed"
    bundle_task = next(t for t in tasks_of(rt, request_id) if t.step == "bundle")
    assert (bundle_task.attempts, bundle_task.reclaims) == (2, 0)
