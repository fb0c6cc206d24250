"""What an erasure would do, shown to the officer before approving it.

Each erasing connector plans for the subject as known now, widened by the
identifiers discovery would add (run here too, to the same fixed point and
cap, but nothing is stored): per collection, how many records would be
deleted, masked (how) or kept (which hold, why). Nothing changes in any store.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy.orm import Session

from .. import audit
from ..connector import Capability, Connector, ConnectorError, Subject
from ..models import Request
from ..runtime import Runtime
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
    like the engine's (``DISCOVERY_MAX_IDENTIFIERS``). A failing discoverer
    is skipped: the preview is advice, the erasure itself rediscovers."""
    cap = int(rt.settings["DISCOVERY_MAX_IDENTIFIERS"])
    known = {kind: set(values) for kind, values in subject.identifiers.items()}
    discoverers = [c for _, c in sorted(rt.connectors.items())
                   if Capability.DISCOVER in c.capabilities]
    while True:
        before = sum(len(v) for v in known.values())
        for connector in discoverers:
            current = Subject(known).restricted_to(connector.identity_kinds)
            if not current.kinds:
                continue
            try:
                found = connector.discover(current)
            except ConnectorError:
                continue
            for kind, values in sorted(found.items()):
                for value in sorted(Subject({kind: values}).values(kind)):
                    if sum(len(v) for v in known.values()) < cap:
                        known.setdefault(kind, set()).add(value)
        if sum(len(v) for v in known.values()) == before:
            return Subject(known)


def _preview(name: str, connector: Connector, subject: Subject) -> dict[str, Any]:
    wanted = subject.restricted_to(connector.identity_kinds)
    if not wanted.kinds:
        return {"connector": name, "note": "no identifiers of the kinds it accepts"}
    try:
        if Capability.ERASE not in connector.capabilities:
            found = sum(1 for _ in connector.find(wanted))
            if found:
                return {"connector": name, "error": f"cannot erase: {found} records found"}
            return {"connector": name, "note": "nothing found"}
        plan = connector.plan_erasure(wanted)
    except ConnectorError as exc:
        return {"connector": name, "error": str(exc) or type(exc).__name__}
    groups = Counter((item.collection, item.action.value, item.detail) for item in plan.items)
    return {"connector": name, "summary": plan.summary(),
            "groups": [{"collection": c, "action": a, "detail": d, "records": n}
                       for (c, a, d), n in sorted(groups.items())]}
