"""Moving a request's due date: the Art. 12(3) extension and the paused clock.

**Extension** (GDPR Art. 12(3)): once per request, by one or two further
months, asked while the first month runs. The further months are counted
from the end of the first month (the original due date), as
:func:`.deadlines.add_months` counts a month, and the time the clock was
paused before is kept: received 31 January, due 28 February, extended by two
months: due 28 April (plus any pause).

**Pause** (UK GDPR Art. 12A): while the officer waits for the requester's
proof of identity or for clarification, the clock stops; when it resumes, the
due date moves by the time paused (to the microsecond). The first month, for
an extension, is moved the same way: it is the due date as it stands before
any extension.

Pure functions of values: :mod:`.requests` applies them to a request.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from .deadlines import add_months, due_date
from .states import Status

#: at most this many further months (Art. 12(3): "by two further months")
MAX_EXTENSION_MONTHS = 2

#: states in which the deadline may be extended: open, the clock running
EXTENDABLE = frozenset({Status.RECEIVED, Status.VERIFYING, Status.VERIFIED,
                        Status.AWAITING_REVIEW, Status.APPROVED, Status.PROCESSING,
                        Status.PARTIALLY_FAILED})


class WaitingFor(enum.StrEnum):
    """What a paused request waits for from the requester."""

    IDENTITY = "identity"
    CLARIFICATION = "clarification"


class Refused(Exception):
    """The request's state or history does not allow this now (not a bad input)."""


def extension_refusal(status: str, extended_at: datetime | None, due_at: datetime,
                      now: datetime) -> str | None:
    """Why a request may not be extended at ``now``, or ``None`` when it may.

    ``due_at`` is the request's due date as it stands: before an extension, the
    end of the first month moved by any pause."""
    if status not in EXTENDABLE:
        return f"a request that is {status} cannot have its deadline extended"
    if extended_at is not None:
        return "the deadline was extended already: Art. 12(3) allows it once"
    if now > due_at:
        return "the first month has ended: an extension must be decided within it"
    return None


def check_months(months: int) -> None:
    """Raise :class:`ValueError` unless ``months`` is 1 or 2."""
    if not 1 <= months <= MAX_EXTENSION_MONTHS:
        raise ValueError(f"an extension is of 1 to {MAX_EXTENSION_MONTHS} further months, "
                         f"not {months}")


def extended_due(received_at: datetime, due_at: datetime, months: int) -> datetime:
    """The due date after extending by ``months``: that many months after the
    original due date, plus the time paused so far (``due_at`` minus it)."""
    check_months(months)
    original = due_date(received_at)
    return add_months(original, months) + (due_at - original)


def paused_for(paused_at: datetime, now: datetime) -> timedelta:
    """How long the clock stood still (never negative)."""
    return max(now - paused_at, timedelta(0))


def resumed_due(due_at: datetime, paused_at: datetime, now: datetime) -> datetime:
    """The due date after a pause from ``paused_at`` to ``now``."""
    return due_at + paused_for(paused_at, now)
