"""What an erasure would do, shown to the officer before approving it.

Each erasing connector plans for the subject as known now: per collection,
how many records would be deleted, masked (how) or kept (which hold, why).
Nothing changes in any store. Identity expansion is not run here, so stores
keyed only by identifiers a discovery would add show nothing yet.
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
    subject = subject_of(rt, request)
    previews = [_preview(name, connector, subject)
                for name, connector in sorted(rt.connectors.items())]
    audit.record(session, rt.crypto, "erasure.previewed", actor=actor, request_id=request.id,
                 details={"connectors": {p["connector"]: p.get("summary", p.get("error", ""))
                                         for p in previews}})
    return previews


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
