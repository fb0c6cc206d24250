"""What an erasure would do, shown to the officer before approving it.

Each erasing connector plans for the subject as known now, widened by the
identifiers discovery would add (run here too, to the same fixed point and
cap, but nothing is stored): per collection, how many records would be
deleted, masked (how) or kept (which hold, why). Nothing changes in any store.

The console shows a stored preview (:class:`~dsar.models.ErasurePreview`):
:func:`refresh`, a housekeeping chore, computes it for every erasure awaiting
review that has none, or whose officer asked again (:func:`ask_again`), and
stores it with its time; reading it runs nothing and records nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from .. import audit
from ..clock import now_of
from ..connector import Capability, Connector, ConnectorError, Subject
from ..database import is_unavailable
from ..models import ErasurePreview, Request
from ..runtime import Runtime
from . import erasure
from .states import RequestKind, Status
from .subjects import subject_of

log = logging.getLogger(__name__)

#: previews :func:`refresh` computes at most per call (housekeeping must not stall)
REFRESH_BATCH = 10


def preview_erasure(session: Session, rt: Runtime, request: Request, *,
                    actor: str) -> list[dict[str, Any]]:
    """One entry per connector: ``summary`` (counts by action) and ``groups``
    (collection, action, detail, records), or ``note``/``error``. Records an
    ``erasure.previewed`` event with the counts."""
    subject, previews = _computed(rt, subject_of(rt, request))
    _recorded(session, rt, request.id, subject, previews, actor)
    return previews


def _computed(rt: Runtime, known: Subject) -> tuple[Subject, list[dict[str, Any]]]:
    subject = _expanded(rt, known)
    return subject, [_preview(name, connector, subject)
                     for name, connector in sorted(rt.connectors.items())]


def _recorded(session: Session, rt: Runtime, request_id: str, subject: Subject,
              previews: list[dict[str, Any]], actor: str,
              extra: dict[str, Any] | None = None) -> None:
    audit.record(session, rt.crypto, "erasure.previewed", actor=actor, request_id=request_id,
                 details={"identifiers": _count(subject), **(extra or {}),
                          "connectors": {p["connector"]: p.get("summary", p.get("error", ""))
                                         for p in previews}})


def _count(subject: Subject) -> int:
    return sum(len(v) for v in subject.identifiers.values())


def ask_again(session: Session, rt: Runtime, request: Request, *, actor: str) -> None:
    """An officer asks for the stored preview to be computed again (by the next
    :func:`refresh`); only for an erasure awaiting review (``ValueError`` else)."""
    if request.kind != RequestKind.ERASURE or request.status != Status.AWAITING_REVIEW:
        raise ValueError("only an erasure awaiting review has a preview to compute")
    stored = session.get(ErasurePreview, request.id)
    if stored is None:
        session.add(ErasurePreview(request_id=request.id, requested_at=now_of(session),
                                   requested_by=actor))
    else:
        stored.requested_at, stored.requested_by = now_of(session), actor
    audit.record(session, rt.crypto, "erasure.preview_requested", actor=actor,
                 request_id=request.id)


def due(session: Session, limit: int = REFRESH_BATCH) -> list[str]:
    """Erasures awaiting review whose preview is missing or older than the
    latest ask, the longest waiting first (at most ``limit``)."""
    return list(session.scalars(
        select(Request.id).outerjoin(ErasurePreview, ErasurePreview.request_id == Request.id)
        .where(Request.status == Status.AWAITING_REVIEW, Request.kind == RequestKind.ERASURE,
               or_(ErasurePreview.computed_at.is_(None),
                   ErasurePreview.computed_at < ErasurePreview.requested_at))
        .order_by(Request.received_at, Request.id).limit(limit)))


def refresh(rt: Runtime, limit: int = REFRESH_BATCH) -> int:
    """Compute and store the previews :func:`due` names; returns how many.
    Each is computed outside any transaction (the stores are read then), then
    stored with the time it started and its ``erasure.previewed`` event."""
    with rt.transaction() as session:
        request_ids = due(session, limit)
    done = 0
    for request_id in request_ids:
        try:
            compute(rt, request_id)
        except Exception as exc:  # one request's failure must not stop the others'
            if is_unavailable(exc):
                raise
            log.error("erasure preview of request %s not computed (%s)", request_id,
                      type(exc).__name__)
            continue
        done += 1
    return done


def compute(rt: Runtime, request_id: str) -> None:
    """Compute one request's preview now and store it (see :func:`refresh`)."""
    with rt.transaction() as session:
        started = rt.now()
        request = session.get(Request, request_id)
        if request is None:
            return
        known = subject_of(rt, request)
    subject, previews = _computed(rt, known)
    with rt.transaction() as session:
        stored = session.get(ErasurePreview, request_id)
        if stored is None:
            stored = ErasurePreview(request_id=request_id, requested_at=started,
                                    requested_by="system")
            session.add(stored)
        stored.computed_at, stored.identifiers = started, _count(subject)
        stored.stores = json.dumps(previews)
        _recorded(session, rt, request_id, subject, previews, "system",
                  {"requested_by": stored.requested_by})


def _expanded(rt: Runtime, subject: Subject) -> Subject:
    """The subject with what discovery would add, to a fixed point, capped
    like the engine's (``DISCOVERY_MAX_IDENTIFIERS``, in the same order). A
    failing discoverer is skipped: the preview is advice, the erasure itself
    rediscovers."""
    cap = int(rt.settings["DISCOVERY_MAX_IDENTIFIERS"])
    known = {kind: set(values) for kind, values in subject.identifiers.items()}
    discoverers = [c for _, c in sorted(rt.connectors.items())
                   if Capability.DISCOVER in c.capabilities]
    while True:
        before = sum(len(v) for v in known.values())
        for connector in discoverers:
            current = erasure.for_store(connector, Subject(known))
            if not current.kinds:
                continue
            try:
                found = erasure.discovered(connector, current)
            except ConnectorError:
                continue
            for kind, values in found.items():
                for value in values:
                    if sum(len(v) for v in known.values()) < cap:
                        known.setdefault(kind, set()).add(value)
        if sum(len(v) for v in known.values()) == before:
            return Subject(known)


def _preview(name: str, connector: Connector, subject: Subject) -> dict[str, Any]:
    wanted = erasure.for_store(connector, subject)
    if not wanted.kinds:
        return {"connector": name, "note": erasure.NO_KINDS}
    try:
        return {"connector": name, **erasure.preview(connector, wanted)}
    except ConnectorError as exc:
        return {"connector": name, "error": connector.described(exc)}
    except Exception as exc:  # a connector bug: never log its message (it may name the subject)
        log.error("erasure preview: connector %s raised %s", name, type(exc).__name__)
        return {"connector": name, "error": f"unexpected {type(exc).__name__} in the "
                                             "connector (a bug: see the worker's log)"}
