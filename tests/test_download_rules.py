"""The download link, as a table: it lives EXPORT_LINK_DAYS (7 days) from
its release and serves EXPORT_MAX_DOWNLOADS (3) downloads; the runtime's
clock is moved, never slept past."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dsar.clock import MovableClock
from dsar.models import ExportBundle, Task
from dsar.runtime import Runtime
from dsar.workflow import export_step
from dsar.workflow import requests as flow
from dsar.workflow.downloads import availability

RELEASED = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)

ROWS = [
    # after the release              downloads done  refusal (None: served)  left
    (timedelta(0), 0, None, 3),
    (timedelta(days=7) - timedelta(microseconds=1), 2, None, 1),
    (timedelta(days=7), 0, "download.expired", 3),
    (timedelta(days=30), 3, "download.expired", 0),
    (timedelta(days=1), 3, "download.exhausted", 0),
    (timedelta(days=1), 4, "download.exhausted", 0),
]


@pytest.mark.parametrize(("after", "done", "refusal", "left"), ROWS,
                         ids=[f"{after} after release, {n} downloaded" for after, n, *_ in ROWS])
def test_a_link_lives_seven_days_and_three_downloads(
        rt: Runtime, after: timedelta, done: int, refusal: str | None, left: int) -> None:
    rt.clock = MovableClock(RELEASED + after)
    export_dir = Path(rt.settings["EXPORT_DIR"])
    export_dir.mkdir(parents=True, exist_ok=True)
    (export_dir / "r.zip").write_bytes(b"zip")
    days = int(rt.settings["EXPORT_LINK_DAYS"])
    bundle = ExportBundle(request_id="r", filename="r.zip", size=3, sha256="0" * 64,
                          created_at=RELEASED, download_count=done,
                          expires_at=RELEASED + timedelta(days=days))
    state = availability(rt, bundle)
    assert (state.refusal, state.left) == (refusal, left)


def test_a_link_whose_file_is_gone_is_not_ready(rt: Runtime) -> None:
    rt.clock = MovableClock(RELEASED + timedelta(days=1))  # the link still lives
    bundle = ExportBundle(request_id="r", filename="missing.zip", size=3, sha256="0" * 64,
                          created_at=RELEASED, download_count=0,
                          expires_at=RELEASED + timedelta(days=7))
    assert availability(rt, bundle).refusal == "download.not_ready"
    assert availability(rt, None).refusal == "download.not_ready"


@pytest.mark.parametrize(("after", "done", "refusal"), [
    (timedelta(days=7), 0, "download.expired"), (timedelta(days=1), 3, "download.exhausted")])
def test_a_link_that_ended_says_so_when_its_file_is_gone_too(
        rt: Runtime, after: timedelta, done: int, refusal: str) -> None:
    """An operator may clear old files from EXPORT_DIR: a link that ended is
    still expired or used up (the requester can only ask again), never "not
    ready yet" (which would send them back to wait)."""
    rt.clock = MovableClock(RELEASED + after)
    bundle = ExportBundle(request_id="r", filename="cleared.zip", size=3, sha256="0" * 64,
                          created_at=RELEASED, download_count=done,
                          expires_at=RELEASED + timedelta(days=7))
    assert availability(rt, bundle).refusal == refusal


def test_the_release_starts_the_seven_days(rt: Runtime) -> None:
    """The link's expiry is set when the bundle is released, by the runtime's clock."""
    rt.clock = MovableClock(RELEASED)
    result = {"file": "r.zip", "size": 3, "sha256": "0" * 64, "counts": {}}
    with rt.transaction() as session:
        request = flow.submit(session, rt, "access", {"email": ["a@example.org"]})
        session.flush()
        export_step.release(session, rt, request, Task(result=json.dumps(result)))
        made = session.get(ExportBundle, request.id)
        assert made is not None
        assert (made.created_at, made.expires_at) == (RELEASED, RELEASED + timedelta(days=7))
