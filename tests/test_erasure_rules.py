"""Erasure is never assumed: a store whose connector can find a person's
records but cannot erase them fails its task, so an officer erases them by
hand; the request never reads "completed" while the records are still there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from dsar.connector import Capability, Connector
from dsar.executor import InProcessExecutor
from dsar.models import AuditEvent, Task
from dsar.runtime import Runtime
from dsar.workflow import requests as flow
from tests.support.engine_connectors import TYPES, Script, ScriptedConnector

ALICE, BOB = "alice@example.org", "bob@example.org"


class FindOnlyConnector(ScriptedConnector):
    """A read-only store (an archive, a backup): finds, declares no
    Capability.ERASE, and keeps the contract's refusing plan_erasure/erase."""

    capabilities = frozenset({Capability.FIND})
    plan_erasure = Connector.plan_erasure
    erase = Connector.erase


@pytest.fixture
def stores(make_app: Callable[..., Flask], scripts: dict[str, Script],
           monkeypatch: pytest.MonkeyPatch) -> Runtime:
    """A crm that erases and an archive that cannot, both holding Bob's
    records; no review, so the erasure runs once verified."""
    monkeypatch.setitem(TYPES, "find-only", FindOnlyConnector)
    for name in ("crm", "archive"):
        scripts[name] = Script()
        scripts[name].seed(BOB, 2)
    runtime: Runtime = make_app({"archive": {"type": "find-only", "script": "archive"},
                                 "crm": {"type": "scripted", "script": "crm"}},
                                ERASURE_REVIEW=False).extensions["dsar"]
    assert Capability.ERASE not in runtime.connectors["archive"].capabilities
    return runtime


def erase(rt: Runtime, email: str) -> tuple[str, dict[str, Task]]:
    """Submit a verified erasure for ``email`` and run it; its final status
    and tasks by connector."""
    with rt.transaction() as session:
        request = flow.submit(session, rt, "erasure", {"email": [email]})
        flow.mark_verified(session, rt, request, actor="test", method="test")
        request_id = request.id
    with InProcessExecutor(rt, 2, poll_seconds=0.05) as executor:
        assert executor.wait_until_idle(30)
    with rt.transaction() as session:
        tasks = session.scalars(select(Task).where(Task.request_id == request_id)).all()
        return flow.get(session, request_id).status, {t.connector: t for t in tasks}


def audit_details(rt: Runtime, action: str) -> list[dict[str, Any]]:
    with rt.transaction() as session:
        return [json.loads(d) for d in session.scalars(
            select(AuditEvent.details).where(AuditEvent.action == action)
            .order_by(AuditEvent.seq))]


def test_records_found_but_not_erasable_fail_the_task(stores: Runtime,
                                                      scripts: dict[str, Script]) -> None:
    scripts["archive"].seed(ALICE, 3)
    scripts["crm"].seed(ALICE, 2)
    status, tasks = erase(stores, ALICE)
    assert status == "partially_failed"
    archive, crm = tasks["archive"], tasks["crm"]
    assert (archive.status, archive.attempts) == ("failed", 1)  # retrying cannot help
    error = "3 records found but this connector cannot erase: erase them by hand, then retry"
    assert archive.last_error == error
    assert [e["error"] for e in audit_details(stores, "task.failed")] == [error]
    assert audit_details(stores, "task.retry_scheduled") == []
    # nothing was asked of the archive but to find; its records are all still there
    assert scripts["archive"].calls == ["find"]
    assert len(scripts["archive"].records[ALICE]) == 3
    # the store that can erase did, all the same
    assert crm.status == "succeeded" and scripts["crm"].records[ALICE] == []


def test_nothing_found_in_a_store_that_cannot_erase_succeeds(
        stores: Runtime, scripts: dict[str, Script]) -> None:
    """Alice has no records there: nothing is left to erase by hand."""
    scripts["crm"].seed(ALICE, 1)
    status, tasks = erase(stores, ALICE)
    assert status == "completed"
    archive = tasks["archive"]
    assert (archive.status, archive.last_error) == ("succeeded", None)
    assert json.loads(archive.result or "{}") == {"plan": {}, "note": "nothing found"}
    assert scripts["archive"].calls == ["find"]
    assert scripts["crm"].records[ALICE] == [] and len(scripts["archive"].records[BOB]) == 2
