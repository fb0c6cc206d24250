"""The dashboard's figures, each aggregated by the database (counts, GROUP BY,
one window query for the percentiles), so a page costs a few queries whatever
the number of requests.

Everything is read at one moment, ``now`` (the runtime's clock), from one
snapshot, and the two figures over time share one window, :func:`window_start`:
the last 26 weeks, Monday to Sunday (UTC), the current week included so far.
Open and closed are the queue's (:data:`.queue.OPEN`: partially failed and
paused are open). Percentiles interpolate linearly between the two nearest
ranks, as PostgreSQL's ``percentile_cont`` does (used there); SQLite has no
percentile function, so a window function ranks the durations and only the
ranks needed come back (:func:`ranked_durations`): no duration list is ever
fetched into Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, literal, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from ..models import Request, Task
from ..models.preview import OPEN_PREDICATE
from ..workflow.states import RequestKind, Status
from ..workflow.task_states import TaskStatus
from .queue import CLOSED, OPEN

WEEKS = 26
#: "due this week": open requests due within this many days, not yet overdue
DUE_SOON_DAYS = 7
#: the percentiles shown, as whole fractions (numerator, denominator): exact integer
#: arithmetic in SQL, where casting a float to an integer rounds on PostgreSQL
PERCENTILES: dict[str, tuple[int, int]] = {"median": (1, 2), "p90": (9, 10)}
_UNIX_JULIAN_DAY = 2440587.5


@dataclass(frozen=True)
class Durations:
    """Days from received to completed of one kind's requests completed in the window."""

    kind: str
    completed: int = 0
    median: float | None = None
    p90: float | None = None


@dataclass(frozen=True)
class Week:
    starts: datetime
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Store:
    """A store's tasks failing on open requests: failed, or waiting to retry."""

    connector: str
    failed: int = 0
    retrying: int = 0

    @property
    def total(self) -> int:
        return self.failed + self.retrying


@dataclass
class Dashboard:
    now: datetime
    since: datetime
    by_status: dict[str, int] = field(default_factory=dict)
    due_soon: int = 0
    overdue: int = 0
    durations: list[Durations] = field(default_factory=list)
    weeks: list[Week] = field(default_factory=list)
    stores: list[Store] = field(default_factory=list)

    @property
    def open(self) -> int:
        return sum(self.by_status.get(s, 0) for s in OPEN)

    @property
    def paused(self) -> int:
        return self.by_status.get(Status.PAUSED, 0)

    @property
    def completed_in_window(self) -> int:
        return sum(d.completed for d in self.durations)


def window_start(now: datetime) -> datetime:
    """Monday 00:00 UTC of the week ``WEEKS - 1`` weeks before ``now``'s."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=today.weekday(), weeks=WEEKS - 1)


def dashboard(session: Session, now: datetime) -> Dashboard:
    """Every figure of the dashboard at ``now``, read from one snapshot: call it first
    in its transaction (on PostgreSQL it asks for REPEATABLE READ; SQLite's transaction
    holds the write lock, so nothing changes under it either)."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    since = window_start(now)
    board = Dashboard(now, since, by_status=by_status(session))
    board.due_soon, board.overdue = due_counts(session, now)
    board.durations = durations(session, since)
    board.weeks = weekly(session, since)
    board.stores = failing_stores(session)
    return board


def by_status(session: Session) -> dict[str, int]:
    """Requests per status, every status present (open ones first, in the queue's order)."""
    found: dict[str, int] = {status: count for status, count in session.execute(
        select(Request.status, func.count()).group_by(Request.status))}
    return {str(s): found.get(s, 0) for s in (*OPEN, *sorted(CLOSED))}


def weekly(session: Session, since: datetime) -> list[Week]:
    """Requests received per week and kind since ``since`` (a Monday), oldest first;
    every week present."""
    start = since.timestamp() / 86400
    week = _whole(session, (_epoch_days(session, Request.received_at) - literal(start)) / 7)
    # grouped outside: PostgreSQL would not see one GROUP BY expression in two with
    # separately bound parameters
    received = select(week.label("week"), Request.kind.label("kind")) \
        .where(Request.received_at >= since).subquery()
    rows = session.execute(select(received.c.week, received.c.kind, func.count())
                           .group_by(received.c.week, received.c.kind)).all()
    counts: dict[int, dict[str, int]] = {}
    for index, kind, count in rows:
        counts.setdefault(int(index), {})[kind] = int(count)
    return [Week(since + timedelta(weeks=i),
                 {k.value: counts.get(i, {}).get(k.value, 0) for k in RequestKind})
            for i in range(WEEKS)]


def due_counts(session: Session, now: datetime) -> tuple[int, int]:
    """(due within the next ``DUE_SOON_DAYS`` days and not overdue, overdue) of the open."""
    soon = and_(Request.due_at >= now, Request.due_at < now + timedelta(days=DUE_SOON_DAYS))
    row = session.execute(
        select(func.count(case((soon, 1))), func.count(case((Request.due_at < now, 1))))
        .where(OPEN_PREDICATE, Request.due_at < now + timedelta(days=DUE_SOON_DAYS))).one()
    return int(row[0]), int(row[1])


def _epoch_days(session: Session, column: Any) -> ColumnElement[Any]:
    """``column`` as days since 1970-01-01 UTC, a float, in the session's dialect (SQLite
    keeps datetimes as UTC text, which ``julianday`` reads; PostgreSQL's ``date_part``
    is a double, several times quicker than ``extract``'s numeric). Midnights come
    out whole on both, so the weeks' edges are exact."""
    if session.get_bind().dialect.name == "sqlite":
        return func.julianday(column) - _UNIX_JULIAN_DAY
    return func.date_part("epoch", column) / 86400.0


def _whole(session: Session, value: ColumnElement[Any]) -> ColumnElement[int]:
    """The floor of a non-negative ``value`` (SQLite's CAST truncates; PostgreSQL's rounds)."""
    if session.get_bind().dialect.name == "sqlite":
        return cast(value, Integer)
    return cast(func.floor(value), Integer)


def durations(session: Session, since: datetime) -> list[Durations]:
    """Median and 90th percentile of the days from received to completed, per kind, of
    the requests completed since ``since``, by linear interpolation between the two
    nearest ranks: PostgreSQL's own ``percentile_cont``, twice as quick there as the
    ranks SQLite needs (:func:`ranked_durations`, which gives the same figures)."""
    if session.get_bind().dialect.name != "postgresql":
        completed: dict[str, int] = {kind: n for kind, n in session.execute(
            select(Request.kind, func.count()).where(*_completed_since(since))
            .group_by(Request.kind))}
        return ranked_durations(session, since, completed)
    days = _days_to_complete(session)
    rows = session.execute(
        select(Request.kind, func.count(),
               *(func.percentile_cont(num / den).within_group(days)
                 for num, den in PERCENTILES.values()))
        .where(*_completed_since(since)).group_by(Request.kind)).all()
    found = {kind: Durations(kind, int(n), float(median), float(p90))
             for kind, n, median, p90 in rows}
    return [found.get(k.value, Durations(k.value)) for k in RequestKind]


def _days_to_complete(session: Session) -> ColumnElement[Any]:
    return _epoch_days(session, Request.closed_at) - _epoch_days(session, Request.received_at)


def _completed_since(since: datetime) -> tuple[ColumnElement[bool], ...]:
    return (Request.status == Status.COMPLETED.value, Request.closed_at.is_not(None),
            Request.closed_at >= since)


def ranked_durations(session: Session, since: datetime,
                     completed: dict[str, int]) -> list[Durations]:
    """:func:`durations` where the database has no percentile function (SQLite), or
    any, given how many of each kind completed (in the same snapshot): each kind's
    durations ranked by a window function, and only the ranks the percentiles fall
    between come back (at most four rows a kind)."""
    wanted = {kind: sorted({r for num, den in PERCENTILES.values()
                            for r in _ranks(n, num, den)})
              for kind, n in completed.items() if n}
    if not wanted:
        return [Durations(k.value) for k in RequestKind]
    days = _days_to_complete(session)
    # partitioned by a number: sorting by the text itself compares under the database's
    # collation, which made the sort most of the query's time on PostgreSQL
    kind = case({k.value: i for i, k in enumerate(RequestKind)}, value=Request.kind,
                else_=len(RequestKind))
    ranked = select(
        Request.kind.label("kind"), days.label("days"),
        func.row_number().over(partition_by=kind, order_by=days).label("rank"),
    ).where(*_completed_since(since)).subquery()
    rows = session.execute(select(ranked.c.kind, ranked.c.rank, ranked.c.days).where(or_(
        *(and_(ranked.c.kind == k, ranked.c.rank.in_([r + 1 for r in ranks]))
          for k, ranks in wanted.items())))).all()
    values: dict[str, dict[int, float]] = {}
    for found, rank, value in rows:
        values.setdefault(found, {})[int(rank) - 1] = float(value)
    return [_durations(k.value, completed.get(k.value, 0), values.get(k.value, {}))
            for k in RequestKind]


def _ranks(n: int, num: int, den: int) -> tuple[int, ...]:
    """The ranks (0-based) of the values the ``num/den`` percentile of ``n`` lies between."""
    lower, rest = divmod((n - 1) * num, den)
    return (lower, lower + 1) if rest else (lower,)


def _durations(kind: str, n: int, values: dict[int, float]) -> Durations:
    if not n:
        return Durations(kind)
    return Durations(kind, n, *(percentile(n, values, num, den)
                                for num, den in PERCENTILES.values()))


def percentile(n: int, values: dict[int, float], num: int, den: int) -> float:
    """The ``num/den`` percentile of ``n`` sorted values, given those at the two ranks
    (0-based) around it."""
    lower, rest = divmod((n - 1) * num, den)
    if not rest:
        return values[lower]
    return values[lower] + (values[lower + 1] - values[lower]) * rest / den


def failing_stores(session: Session) -> list[Store]:
    """Per connector, the tasks of open requests that failed, or that wait to retry
    (pending or running again since a retryable error: ``retrying_since`` set); the
    most failing first."""
    failed = Task.status == TaskStatus.FAILED.value
    retrying = and_(Task.status.in_((TaskStatus.PENDING.value, TaskStatus.RUNNING.value)),
                    Task.retrying_since.is_not(None))
    rows = session.execute(
        select(Task.connector, func.count(case((failed, 1))), func.count(case((retrying, 1))))
        .join(Request, Request.id == Task.request_id)
        .where(Request.status.not_in([s.value for s in sorted(CLOSED)]), or_(failed, retrying))
        .group_by(Task.connector)).all()
    stores = [Store(connector, int(f), int(r)) for connector, f, r in rows]
    return sorted(stores, key=lambda s: (-s.total, s.connector))
