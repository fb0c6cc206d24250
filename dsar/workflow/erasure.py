"""What erasure does to one store, in one place: the erasure task
(:mod:`.tasks`) and the officer's preview (:mod:`.preview`) call the same code.

* :func:`for_store`: the subject as the store sees it (the kinds it accepts);
* :func:`discovered`: what a store's discovery adds, cleaned and in order;
* :func:`unerasable`: a store that cannot erase and holds records of the
  subject (they must be erased by hand) fails, one that holds none is done;
* :func:`run`: plan, erase, then find again: anything left that no hold keeps
  fails the task (erasure is verified, not assumed); the result counts what
  each hold kept (:func:`held`, for the requester's notice);
* :func:`preview`: the plan alone, counted per collection, action and hold.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .. import faults
from ..connector import Action, Capability, Connector, ErasurePlan, Subject
from .outcome import Outcome

#: why a store is left out: none of the subject's identifiers are of a kind it takes
NO_KINDS = "no identifiers of the kinds it accepts"
NOTHING_FOUND = "nothing found"


def for_store(connector: Connector, subject: Subject) -> Subject:
    """The subject restricted to the kinds ``connector`` accepts (no kinds: skip it)."""
    return subject.restricted_to(connector.identity_kinds)


def discovered(connector: Connector, subject: Subject) -> dict[str, list[str]]:
    """What ``connector``'s discovery finds for ``subject``: normalised,
    non-empty, sorted by kind then value (the order a cap keeps them in)."""
    found = Subject({kind: [v for v in values if isinstance(v, str)]
                     for kind, values in connector.discover(subject).items()})
    return {kind: sorted(found.values(kind)) for kind in sorted(found.kinds)}


def unerasable(connector: Connector, subject: Subject) -> str | None:
    """For a store without ``Capability.ERASE``: the error when it holds
    records of the subject, ``None`` when it holds none."""
    found = sum(1 for _ in connector.find(subject))
    if not found:
        return None
    return f"{found} records found but this connector cannot erase: erase them by hand, then retry"


def run(connector: Connector, subject: Subject) -> Outcome:
    """Erase ``subject`` from the store and verify it by finding again."""
    if Capability.ERASE not in connector.capabilities:
        problem = unerasable(connector, subject)
        if problem:
            return Outcome(False, error=problem)
        return Outcome(True, result={"plan": {}, "note": NOTHING_FOUND})
    plan = connector.plan_erasure(subject)
    done = connector.erase(plan)
    faults.point("task.erased")
    kept = plan.kept()
    left = Counter(r.collection for r in connector.find(subject) if r.ref not in kept)
    holds = sorted({item.detail for item in plan.items if item.ref in kept})
    result = {"plan": plan.summary(), "deleted": done.deleted, "masked": done.masked,
              "kept": done.kept, "holds": holds, "held": held(plan)}
    if left:
        where = ", ".join(sorted(left))
        return Outcome(False, records=len(plan.items), result=result,
                       error=f"erasure not verified: {sum(left.values())} records remain "
                       f"that no hold keeps (in {where})")
    return Outcome(True, records=len(plan.items), result=result)


def held(plan: ErasurePlan) -> dict[str, int]:
    """The records each hold keeps, by the hold's name (a record kept under
    two holds counts under each; one that names none counts under ``""``):
    what the requester's notice explains, hold by hold."""
    counts: Counter[str] = Counter()
    for item in plan.items:
        if item.action is Action.KEEP:
            counts.update(item.holds or ("",))
    return dict(sorted(counts.items()))


def preview(connector: Connector, subject: Subject) -> dict[str, Any]:
    """What :func:`run` would do, changing nothing: ``summary`` (counts by
    action) and ``groups`` (collection, action, detail, records), or
    ``note``/``error``."""
    if Capability.ERASE not in connector.capabilities:
        problem = unerasable(connector, subject)
        return {"error": problem} if problem else {"note": NOTHING_FOUND}
    return _counted(connector.plan_erasure(subject))


def _counted(plan: ErasurePlan) -> dict[str, Any]:
    groups = Counter((item.collection, item.action.value, item.detail) for item in plan.items)
    return {"summary": plan.summary(),
            "groups": [{"collection": c, "action": a, "detail": d, "records": n}
                       for (c, a, d), n in sorted(groups.items())]}
