"""The queue: every open request, the nearest deadline (and so the overdue)
first, with what an officer needs to pick one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Request
from ..workflow.states import Status

#: states in which a request still needs something done
OPEN = (Status.RECEIVED, Status.VERIFYING, Status.VERIFIED, Status.AWAITING_REVIEW,
        Status.APPROVED, Status.PROCESSING, Status.PARTIALLY_FAILED)


@dataclass(frozen=True)
class Row:
    id: str
    kind: str
    status: str
    received_at: datetime
    due_at: datetime
    days_left: int

    @property
    def overdue(self) -> bool:
        return self.days_left < 0


def open_requests(session: Session, now: datetime, limit: int = 50) -> list[Row]:
    found = session.execute(
        select(Request.id, Request.kind, Request.status, Request.received_at, Request.due_at)
        .where(Request.status.in_(OPEN)).order_by(Request.due_at, Request.id).limit(limit))
    return [Row(i, k, s, r, d, (d - now).days) for i, k, s, r, d in found]
