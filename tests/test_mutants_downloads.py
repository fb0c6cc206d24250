"""dsar/workflow/downloads.py to the field: what availability() says in each case (refusal,
downloads left, expiry shown), and what take() counts, records and refuses. The runtime's
clock is moved, never slept past."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from dsar.clock import MovableClock
from dsar.models import AuditEvent, ExportBundle, Request
from dsar.runtime import Runtime
from dsar.workflow import downloads
from dsar.workflow import requests as flow
from dsar.workflow.downloads import Availability, DownloadRefused, availability

RELEASED = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
EXPIRES = RELEASED + timedelta(days=7)


def bundle(rt: Runtime, done: int = 0, filename: str = "r.zip") -> ExportBundle:
    export_dir = Path(rt.settings["EXPORT_DIR"])
    export_dir.mkdir(parents=True, exist_ok=True)
    (export_dir / "r.zip").write_bytes(b"zip")
    return ExportBundle(request_id="r", filename=filename, size=3, sha256="ab" * 32,
                        created_at=RELEASED, download_count=done, expires_at=EXPIRES)


@pytest.mark.parametrize(("after", "done", "filename", "expected"), [
    (timedelta(0), 1, "r.zip", Availability(None, 2, EXPIRES)),
    (timedelta(0), 1, "gone.zip", Availability("download.not_ready", 2, EXPIRES)),
    (timedelta(days=7), 1, "r.zip", Availability("download.expired", 2, EXPIRES)),
    (timedelta(days=1), 3, "r.zip", Availability("download.exhausted", 0, EXPIRES)),
], ids=["served", "file gone", "expired", "exhausted"])
def test_availability_says_why_how_many_are_left_and_until_when(
        rt: Runtime, after: timedelta, done: int, filename: str,
        expected: Availability) -> None:
    rt.clock = MovableClock(RELEASED + after)
    assert availability(rt, bundle(rt, done, filename)) == expected


def test_no_bundle_yet_is_not_ready_with_nothing_left(rt: Runtime) -> None:
    assert availability(rt, None) == Availability("download.not_ready", 0, None)


def test_a_bundle_without_an_expiry_is_served_whenever(rt: Runtime) -> None:
    rt.clock = MovableClock(RELEASED + timedelta(days=3650))
    made = bundle(rt)
    made.expires_at = None
    assert availability(rt, made) == Availability(None, 3, None)


def completed_with_bundle(rt: Runtime) -> str:
    with rt.transaction() as session:
        request = flow.submit(session, rt, "access", {"email": ["a@example.org"]})
        session.flush()
        made = bundle(rt)
        made.request_id = request.id
        session.add(made)
        return request.id


def downloaded_events(rt: Runtime) -> list[tuple[str, str | None, dict[str, object]]]:
    with rt.transaction() as session:
        return [(e.actor, e.request_id, json.loads(e.details)) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action == "export.downloaded")
            .order_by(AuditEvent.seq))]


def test_take_counts_each_download_and_records_it(rt: Runtime) -> None:
    rt.clock = MovableClock(RELEASED)
    request_id = completed_with_bundle(rt)
    for actor in (None, "officer:kim"):
        with rt.transaction() as session:
            request = session.get(Request, request_id)
            assert request is not None
            path = downloads.take(session, rt, request) if actor is None else \
                downloads.take(session, rt, request, actor=actor)
            assert path == Path(rt.settings["EXPORT_DIR"]) / "r.zip"
    assert downloaded_events(rt) == [
        ("requester", request_id, {"download": 1, "sha256": "ab" * 32}),
        ("officer:kim", request_id, {"download": 2, "sha256": "ab" * 32}),
    ]
    with rt.transaction() as session:
        made = session.get(ExportBundle, request_id)
        assert made is not None and made.download_count == 2


def test_take_refuses_with_the_texts_key(rt: Runtime) -> None:
    rt.clock = MovableClock(RELEASED)
    with rt.transaction() as session:
        request = flow.submit(session, rt, "access", {"email": ["b@example.org"]})
        session.flush()
        with pytest.raises(DownloadRefused) as refused:
            downloads.take(session, rt, request)
    assert refused.value.key == "download.not_ready"
    assert str(refused.value) == "download.not_ready"
    request_id = completed_with_bundle(rt)
    rt.clock = MovableClock(EXPIRES)
    with rt.transaction() as session:
        request = session.get(Request, request_id)
        assert request is not None
        with pytest.raises(DownloadRefused) as refused:
            downloads.take(session, rt, request)
    assert (refused.value.key, str(refused.value)) == ("download.expired", "download.expired")
    assert downloaded_events(rt) == []
