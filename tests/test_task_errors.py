"""What a store's failure leaves for officers to read: the connector's own
message, never its secrets (a driver's message may quote a connection URL)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from sqlalchemy import select

from dsar.connector import PermanentError
from dsar.models import AuditEvent
from tests.support.engine_connectors import Script
from tests.test_engine import process, status, submit, tasks_of, two_stores

URL = "postgresql://crm:hunter2-secret@db.internal/crm"


def test_a_connector_error_quoting_a_url_keeps_its_password_out(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    rt = make_app(two_stores(scripts)).extensions["dsar"]
    scripts["crm"].fail_times = 1
    scripts["crm"].fail_with = lambda _message: PermanentError(  # type: ignore[assignment]
        f"could not connect to {URL}: timeout")
    request_id = submit(rt)
    process(rt)
    assert status(rt, request_id) == "partially_failed"
    crm = next(t for t in tasks_of(rt, request_id) if t.connector == "crm")
    assert crm.last_error == ("could not connect to postgresql://crm:********@db.internal/crm: "
                              "timeout")
    with rt.transaction() as session:
        trail = " ".join(session.scalars(select(AuditEvent.details).where(
            AuditEvent.request_id == request_id)))
    assert "hunter2" not in trail and "********" in trail
