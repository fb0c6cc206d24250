"""What an erasure would do, shown to the officer before approving it.

Each erasing connector plans for the subject as known now, widened by the
identifiers discovery would add (run here too, to the same fixed point and
cap, but nothing is stored): per collection, how many records would be
deleted, masked (how) or kept (which hold, why). Nothing changes in any store.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from .. import audit
from ..connector import Capability, Connector, ConnectorError, Subject
from ..models import Request
from ..runtime import Runtime
from . import erasure
from .subjects import subject_of


def preview_erasure(session: Session, rt: Runtime, request: Request, *,
                    actor: str) -> list[dict[str, Any]]:
    """One entry per connector: ``summary`` (counts by action) and ``groups``
    (collection, action, detail, records), or ``note``/``error``. Records an
    ``erasure.previewed`` event with the counts."""
    subject = _expanded(rt, subject_of(rt, request))
    previews = [_preview(name, connector, subject)
                for name, connector in sorted(rt.connectors.items())]
    audit.record(session, rt.crypto, "erasure.previewed", actor=actor, request_id=request.id,
                 details={"identifiers": sum(len(v) for v in subject.identifiers.values()),
                          "connectors": {p["connector"]: p.get("summary", p.get("error", ""))
                                         for p in previews}})
    return previews


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
