"""The queue: requests with what an officer needs to pick one, the nearest
deadline (and so the overdue) first; filtered by status, kind and due window,
searched by request id or by the subject's email, a page at a time.

Every filter is a query parameter checked here (:func:`parse`): a value that
is not one of ours is an error for the page to show, never a query. The email
search never reaches a URL: the search form is posted and answered with a
redirect to ``?subject=<keyed hash>`` (:func:`subject_digest`), looked up
against :class:`~dsar.models.SubjectIdentifier`'s ``digest`` column.
Queries use ``ix_requests_status_due_at`` (migration 0009).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..crypto import Crypto
from ..models import Request, SubjectIdentifier
from ..models.preview import OPEN_PREDICATE
from ..models.request import is_request_id
from ..workflow.states import RequestKind, Status

#: states after which nothing more is done (partially failed stays: an officer may retry)
CLOSED = frozenset({Status.COMPLETED, Status.DENIED, Status.EXPIRED, Status.CANCELLED})
#: states in which a request still needs something done
OPEN = tuple(s for s in Status if s not in CLOSED)
PER_PAGE = 50
#: the status filter's choices beyond one state
OPEN_CHOICE, ALL_CHOICE = "open", "all"
#: due windows: value -> (label, days from now; ``None``: overdue only)
DUE: dict[str, tuple[str, int | None]] = {
    "overdue": ("Overdue", None), "3": ("Due within 3 days", 3),
    "7": ("Due within 7 days", 7), "30": ("Due within 30 days", 30)}
_Q = TypeVar("_Q", bound=Any)
_DIGEST = re.compile(r"[0-9a-f]{64}")
#: what each field is told when its value is not one of ours
WRONG = {"status": "Choose a status from the list", "kind": "Choose a kind from the list",
         "due": "Choose a due window from the list",
         "page": "Choose a page number from the pages listed",
         "request": "A request id is 32 characters, 0 to 9 and a to f",
         "subject": "The search has expired: search again",
         "q": "Enter a request id (32 characters, 0 to 9 and a to f) or an email address"}


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


@dataclass(frozen=True)
class Filters:
    """What the officer asked for; ``status`` empty: open, or every status
    when searching (a search looks for one request, open or closed)."""

    status: str = ""
    kind: str = ""
    due: str = ""
    request: str = ""
    subject: str = ""
    page: int = 1

    @property
    def searching(self) -> bool:
        return bool(self.request or self.subject)

    @property
    def statuses(self) -> tuple[str, ...] | None:
        """The states shown (``None``: all)."""
        chosen = self.status or (ALL_CHOICE if self.searching else OPEN_CHOICE)
        if chosen == ALL_CHOICE:
            return None
        return tuple(OPEN) if chosen == OPEN_CHOICE else (chosen,)

    def args(self, **changed: Any) -> dict[str, str | int]:
        """The query parameters of these filters (with ``changed``), defaults left out."""
        values = {**self.__dict__, **changed}
        return {k: v for k, v in values.items() if v and not (k == "page" and v == 1)}


@dataclass
class Page:
    filters: Filters
    rows: list[Row] = field(default_factory=list)
    total: int = 0

    @property
    def pages(self) -> int:
        return max(math.ceil(self.total / PER_PAGE), 1)

    @property
    def first(self) -> int:
        return (self.filters.page - 1) * PER_PAGE + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return (self.filters.page - 1) * PER_PAGE + len(self.rows)


def status_choices() -> list[tuple[str, str]]:
    return ([("", "Open (any open status)")]
            + [(s.value, s.value.replace("_", " ")) for s in Status]
            + [(ALL_CHOICE, "Any status, open or closed")])


def kind_choices() -> list[tuple[str, str]]:
    return [("", "Any kind")] + [(k.value, k.value) for k in RequestKind]


def due_choices() -> list[tuple[str, str]]:
    return [("", "Any due date")] + [(k, label) for k, (label, _) in DUE.items()]


def parse(args: Mapping[str, str]) -> tuple[Filters, dict[str, str]]:
    """The filters in ``args``, and an error per field whose value is not one
    of ours (that field is then left at its default)."""
    values = {name: str(args.get(name, "")).strip()
              for name in ("status", "kind", "due", "request", "subject", "page")}
    valid = {
        "status": values["status"] in {v for v, _ in status_choices()},
        "kind": values["kind"] in {v for v, _ in kind_choices()},
        "due": values["due"] in {v for v, _ in due_choices()},
        "request": not values["request"] or is_request_id(values["request"]),
        "subject": not values["subject"] or _DIGEST.fullmatch(values["subject"]) is not None,
        "page": not values["page"] or (values["page"].isascii() and values["page"].isdigit()
                                       and 0 < len(values["page"]) < 7
                                       and int(values["page"]) >= 1),
    }
    errors = {name: WRONG[name] for name, ok in valid.items() if not ok}
    kept = {name: value for name, value in values.items() if valid[name] and name != "page"}
    page = int(values["page"]) if valid["page"] and values["page"] else 1
    return Filters(**kept, page=page), errors


def search_target(crypto: Crypto, text: str) -> dict[str, str] | None:
    """The query parameter a search for ``text`` becomes: ``request`` for a
    request id, ``subject`` (the keyed hash) for an email address; ``None``
    for anything else. The address itself goes no further than this."""
    cleaned = text.strip()
    if is_request_id(cleaned.lower()):
        return {"request": cleaned.lower()}
    if "@" in cleaned and len(cleaned) <= 254 and not any(c.isspace() for c in cleaned):
        return {"subject": subject_digest(crypto, cleaned)}
    return None


def subject_digest(crypto: Crypto, email: str) -> str:
    """The keyed hash an email address is stored under (normalised: case, spaces)."""
    return crypto.identifier_digest("email", email)


def page_of(session: Session, filters: Filters, now: datetime) -> Page:
    """One page of the requests ``filters`` ask for; the page past the last
    is empty (the caller says so)."""
    where = _where(select(Request.id), filters, now)
    total = session.scalar(select(func.count()).select_from(where.subquery())) or 0
    found = session.execute(
        _where(select(Request.id, Request.kind, Request.status, Request.received_at,
                      Request.due_at), filters, now)
        .order_by(Request.due_at, Request.id)
        .offset((filters.page - 1) * PER_PAGE).limit(PER_PAGE))
    rows = [Row(i, k, s, r, d, (d - now).days) for i, k, s, r, d in found]
    return Page(filters, rows, total)


def _where(query: _Q, filters: Filters, now: datetime) -> _Q:
    statuses = filters.statuses
    if statuses == OPEN:  # as ix_requests_open_due_at's predicate says it
        query = query.where(OPEN_PREDICATE)
    elif statuses is not None:
        query = query.where(Request.status.in_(statuses))
    if filters.kind:
        query = query.where(Request.kind == filters.kind)
    if filters.due:
        days = DUE[filters.due][1]
        query = query.where(Request.due_at < now + timedelta(days=days or 0))
    if filters.request:
        query = query.where(Request.id == filters.request)
    if filters.subject:
        query = query.where(Request.id.in_(
            select(SubjectIdentifier.request_id).where(
                SubjectIdentifier.kind == "email",
                SubjectIdentifier.digest == filters.subject)))
    return query


def without_page(filters: Filters) -> Filters:
    return replace(filters, page=1)
