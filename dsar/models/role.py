"""A role exactly one process plays at a time (housekeeping), held under a
lease like a task, so a dead holder's role passes on within one lease."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from ..database import Base


class WorkerRole(Base):
    __tablename__ = "worker_roles"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"<WorkerRole {self.name} held by {self.holder}>"
