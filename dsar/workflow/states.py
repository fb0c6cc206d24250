"""The request state machine: one transition table, one function to move.

Every transition writes its audit event in the same transaction as the status
change (:func:`transition`), so the log and the state cannot disagree.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from .. import audit
from ..clock import now_of
from ..crypto import Crypto
from ..models import Request


class RequestKind(enum.StrEnum):
    ACCESS = "access"
    ERASURE = "erasure"


class Status(enum.StrEnum):
    RECEIVED = "received"
    VERIFYING = "verifying"
    VERIFIED = "verified"
    AWAITING_REVIEW = "awaiting_review"
    APPROVED = "approved"
    DENIED = "denied"
    PROCESSING = "processing"
    COMPLETED = "completed"
    PARTIALLY_FAILED = "partially_failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    #: the clock stopped while waiting for the requester (identity, clarification)
    PAUSED = "paused"


S = Status
TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    # received -> verified: identity checked out of band by an operator (CLI).
    S.RECEIVED: frozenset({S.VERIFYING, S.VERIFIED, S.EXPIRED, S.CANCELLED, S.PAUSED}),
    S.VERIFYING: frozenset({S.VERIFIED, S.EXPIRED, S.CANCELLED, S.PAUSED}),
    S.VERIFIED: frozenset({S.AWAITING_REVIEW, S.PROCESSING, S.CANCELLED}),
    S.AWAITING_REVIEW: frozenset({S.APPROVED, S.DENIED, S.CANCELLED, S.PAUSED}),
    # waiting for the requester (UK GDPR Art. 12A): resumed to the state it left
    S.PAUSED: frozenset({S.RECEIVED, S.VERIFYING, S.AWAITING_REVIEW, S.CANCELLED}),
    S.APPROVED: frozenset({S.PROCESSING, S.CANCELLED}),
    S.PROCESSING: frozenset({S.COMPLETED, S.PARTIALLY_FAILED, S.CANCELLED}),
    # an officer may retry what failed
    S.PARTIALLY_FAILED: frozenset({S.PROCESSING, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.DENIED: frozenset(),
    S.EXPIRED: frozenset(),
    S.CANCELLED: frozenset(),
}

#: States in which a request needs nothing more from anyone.
FINAL: frozenset[Status] = frozenset(
    {S.COMPLETED, S.PARTIALLY_FAILED, S.DENIED, S.EXPIRED, S.CANCELLED}
)


class IllegalTransition(Exception):
    """The request cannot move from its state to the one asked for."""

    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"a request that is {current} cannot become {target}")
        self.current, self.target = current, target


def can_transition(current: Status | str, target: Status | str) -> bool:
    return Status(target) in TRANSITIONS[Status(current)]


def transition(session: Session, crypto: Crypto, request: Request, target: Status, *,
               actor: str, reason: str | None = None,
               details: Mapping[str, Any] | None = None, event: str | None = None) -> None:
    """Move ``request`` to ``target`` and record ``request.<target>`` (or
    ``event``: ``request.resumed`` says more than the state it returns to) in
    the audit chain, in the caller's transaction.

    Raises :class:`IllegalTransition` (and changes nothing) when the table
    forbids the move. ``reason`` is kept on the request and in the event.
    """
    current = Status(request.status)
    if not can_transition(current, target):
        raise IllegalTransition(current.value, target.value)
    request.status = target.value
    if reason is not None:
        request.status_reason = reason
    if target is S.VERIFIED:
        request.verified_at = now_of(session)
    request.closed_at = now_of(session) if target in FINAL else None
    event_details = {"from": current.value, **(details or {})}
    if reason is not None:
        event_details["reason"] = reason
    audit.record(session, crypto, event or f"request.{target.value}", actor=actor,
                 request_id=request.id, details=event_details)
