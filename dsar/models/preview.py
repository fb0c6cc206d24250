"""An erasure request's stored preview: what erasing would do, store by store.

Computed by a worker (:func:`dsar.workflow.preview.refresh`) when the request
awaits review, and again when an officer asks (``requested_at`` moves past
``computed_at``); the console only reads it. ``stores`` is the JSON list of
:func:`dsar.workflow.preview.preview_erasure`'s entries: counts, collection
names, actions and holds, never an identifier or a record.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from ..database import Base
from .request import Request


class ErasurePreview(Base):
    __tablename__ = "erasure_previews"

    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"),
                                            primary_key=True)
    #: when the latest computation was asked for, and by whom (``system``: the request
    #: reached review; ``officer:<id>``: compute again)
    requested_at: Mapped[datetime]
    requested_by: Mapped[str] = mapped_column(String(120))
    #: when the stored result was computed (it read the stores from then on); due
    #: again while ``None`` or earlier than ``requested_at``
    computed_at: Mapped[datetime | None]
    #: identifiers the computation used (the subject's, widened by discovery)
    identifiers: Mapped[int] = mapped_column(default=0)
    stores: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"<ErasurePreview {self.request_id} computed {self.computed_at}>"


#: the states after which a request needs nothing more (``workflow.states``; the
#: console's queue shows every other, the partially failed included: it may be retried)
CLOSED_STATUSES = ("cancelled", "completed", "denied", "expired")
#: the console's queue (:mod:`dsar.console.queue`), the nearest deadline first, ``id``
#: breaking ties: the open requests in order (old closed ones are most rows, and come
#: first by due date), and one status in order (kept here, beside migration 0009). A
#: query uses the partial index when its WHERE says OPEN_PREDICATE itself, as constants
#: (bound parameters would let PostgreSQL's generic plans miss it)
OPEN_PREDICATE = text("status NOT IN ('cancelled', 'completed', 'denied', 'expired')")
QUEUE_OPEN_INDEX = Index("ix_requests_open_due_at", Request.due_at, Request.id,
                         postgresql_where=OPEN_PREDICATE,
                         sqlite_where=OPEN_PREDICATE)
QUEUE_STATUS_INDEX = Index("ix_requests_status_due_at", Request.status, Request.due_at,
                           Request.id)
