"""One unit of connector work for a request: (request, connector, step).

Long work is state in rows: a worker claims a task by taking its lease and
keeps it with a heartbeat; a task whose lease ran out (its worker died) is
claimed again; results are written only by the worker that still holds the
lease. Steps: ``discover``, ``export`` and ``erase`` run a connector;
``bundle`` (connector ``BUNDLE_CONNECTOR``) builds an access request's export
from the parts its export tasks committed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..clock import column_now
from ..database import Base

#: the ``connector`` of a request's bundle step, which belongs to no store
BUNDLE_CONNECTOR = "export-bundle"


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("request_id", "connector", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"),
                                            index=True)
    connector: Mapped[str] = mapped_column(String(120))
    step: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    #: runs started by a worker (a retry is a new attempt; a take-over after a crash is not)
    attempts: Mapped[int] = mapped_column(default=0)
    #: times the task was taken back from a worker that died while running it
    reclaims: Mapped[int] = mapped_column(default=0)
    not_before: Mapped[datetime] = mapped_column(default=column_now)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    record_count: Mapped[int] = mapped_column(default=0)
    #: how many identifiers the subject had when this task last ran
    identifiers_seen: Mapped[int] = mapped_column(default=0)
    result: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    #: when the current run of retryable failures began (the store has been down since)
    retrying_since: Mapped[datetime | None] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=column_now)
    finished_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"<Task {self.id} {self.connector}/{self.step} {self.status} x{self.attempts}>"
