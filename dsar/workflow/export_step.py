"""The export's own step: an access request's bundle, built and released.

When every export task of an access request has succeeded, :func:`engine.finalise`
adds one more task, step ``bundle``. A worker runs it like any other:

1. :func:`job_for` (a short transaction) reads which part each store's task
   committed, how many records it reported, and the identifiers used;
2. :func:`build` (no transaction, no lock on the app database) streams the
   parts into the zip and checks every store's count in the manifest against
   its task's: a mismatch fails the request for an officer, whose ``retry``
   runs those stores again and rebuilds;
3. recording the step's success releases the bundle (:func:`release`: the
   ``ExportBundle`` row, ``request.completed`` and its audit event, one
   transaction); only then :func:`after_release` removes the parts.

A crash anywhere before the release builds again from the parts; a crash
after it leaves parts that :func:`sweep` removes. Requesters never see this
step in their progress list; officers do.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import faults
from ..models import ExportBundle, Request, Task
from ..models.request import is_request_id
from ..runtime import Runtime
from . import bundle
from .outcome import Outcome
from .states import Status
from .subjects import identifier_sources
from .task_states import Step, TaskStatus

log = logging.getLogger(__name__)

#: staged parts of a request in one of these states may still be needed
_PARTS_NEEDED = (Status.PROCESSING.value, Status.PARTIALLY_FAILED.value)
#: a ``.zip.partial`` older than this is a crashed build's leftover
_STALE_PARTIAL_SECONDS = 3600.0


@dataclass
class BundleJob:
    request: Request
    #: connector -> the part its recorded run committed
    parts: dict[str, str]
    #: connector -> records its task reported
    expected: dict[str, int]
    identifiers: list[dict[str, str]]


def _result(task: Task) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(task.result or "{}")
    return loaded


def job_for(session: Session, rt: Runtime, request: Request,
            tasks: list[Task] | None = None) -> BundleJob:
    """What the bundle of ``request`` is built from (read in the caller's
    transaction, unless the caller passes the request's ``tasks``)."""
    if tasks is None:
        tasks = list(session.scalars(select(Task).where(Task.request_id == request.id)))
    parts, expected = {}, {}
    for task in tasks:
        if task.step != Step.EXPORT or task.status != TaskStatus.SUCCEEDED:
            continue
        parts[task.connector] = _result(task).get("part") or bundle.safe_name(task.connector)
        expected[task.connector] = task.record_count
    return BundleJob(request, parts, expected, identifier_sources(rt, request))


def build(rt: Runtime, job: BundleJob) -> Outcome:
    """Write the zip and check it; the outcome names the file for the release."""
    built = bundle.build(Path(rt.settings["EXPORT_DIR"]), job.request, job.parts,
                         job.identifiers, rt.settings["EXPORT_COMPRESSION"], rt.now())
    faults.point("bundle.written")
    mismatched = sorted(n for n, count in job.expected.items() if built.counts.get(n) != count)
    if mismatched:
        log.error("export of request %s incomplete: counts differ for %s", job.request.id,
                  ", ".join(mismatched))
        return Outcome(False, result={"mismatched": mismatched, "counts": built.counts,
                                      "expected": job.expected},
                       error="export incomplete: the records staged for "
                       f"{', '.join(mismatched)} differ from what their tasks reported; "
                       "not released. Retry runs those stores again.")
    return Outcome(True, records=sum(built.counts.values()),
                   result={"file": built.path.name, "size": built.size,
                           "sha256": built.sha256, "counts": built.counts})


def release(session: Session, rt: Runtime, request: Request,
            task: Task) -> tuple[ExportBundle, dict[str, Any]]:
    """Record the built bundle (in the transaction that completes the request);
    returns its row (for the requester's notice) and the details for
    ``request.completed``."""
    result = _result(task)
    made = session.get(ExportBundle, request.id)
    if made is None:
        made = ExportBundle(request_id=request.id, download_count=0)
        session.add(made)
    now = rt.now()
    made.filename, made.size, made.sha256 = result["file"], result["size"], result["sha256"]
    made.created_at = now
    made.expires_at = now + timedelta(days=int(rt.settings["EXPORT_LINK_DAYS"]))
    session.flush()
    log.info("export bundle released for request %s (%d bytes)", request.id, made.size)
    return made, {"bundle_sha256": made.sha256, "bundle_size": made.size,
                  "bundle_records": result["counts"]}


def after_release(rt: Runtime, request_id: str) -> None:
    """The release is committed: the staged parts have served their purpose."""
    faults.point("bundle.released")
    bundle.discard_parts(Path(rt.settings["EXPORT_DIR"]), request_id)


def mismatched(task: Task) -> list[str]:
    """The stores a failed bundle step found incomplete."""
    return list(_result(task).get("mismatched", []))


def sweep(rt: Runtime) -> int:
    """Housekeeping: remove parts no request needs any more (left by a crash
    after a release, or by a cancelled request) and stale partial zips."""
    export_dir = Path(rt.settings["EXPORT_DIR"])
    if not export_dir.is_dir():
        return 0
    staged = {p.name: p for p in export_dir.iterdir()
              if p.is_dir() and is_request_id(p.name) and (p / "parts").is_dir()}
    removed = 0
    if staged:
        with rt.transaction() as session:
            needed = set(session.scalars(select(Request.id).where(
                Request.id.in_(staged), Request.status.in_(_PARTS_NEEDED))))
        for name in sorted(set(staged) - needed):
            bundle.discard_parts(export_dir, name)
            removed += 1
    for partial in export_dir.glob("*.zip.partial"):
        if time.time() - partial.stat().st_mtime > _STALE_PARTIAL_SECONDS:
            partial.unlink(missing_ok=True)
            removed += 1
    return removed
