"""Engine, declarative base and column types shared by every model.

SQLite is the embedded default: it gets WAL, a busy timeout (30 s, or the URL's
``?timeout=`` in seconds), foreign keys and
``BEGIN IMMEDIATE`` transactions, so worker threads serialise their writes
instead of failing on a lock upgrade. Datetimes are always timezone-aware UTC,
whatever the backend returns.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, exc, make_url
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from .clock import system_now
from .config import ConfigError
from .files import private_file

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: the system's aware UTC time, for code outside a runtime (scripts, tests);
#: dsar's own code reads the runtime's clock (:mod:`dsar.clock`)
utcnow = system_now


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment = cast(datetime, value)
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime}


#: seconds a SQLite connection waits for another's write lock before "database is
#: locked"; the URL's ``?timeout=`` (SQLAlchemy's pysqlite parameter) overrides it
SQLITE_BUSY_SECONDS = 30.0


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets the pragmas threads need."""
    if url.startswith("sqlite"):
        busy = _sqlite_busy_seconds(url)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy})
        _tune_sqlite(engine, busy)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_busy_seconds(url: str) -> float:
    raw = make_url(url).query.get("timeout", SQLITE_BUSY_SECONDS)
    try:
        busy = float(raw if isinstance(raw, str | float) else raw[-1])
    except ValueError:
        busy = -1.0
    if not busy >= 0:
        raise ConfigError("DSAR_DATABASE_URL: ?timeout= must be a number of seconds")
    return busy


#: execution option of :meth:`Runtime.reading`'s connection: a read that takes no write lock
READING = "dsar_reading"


def _tune_sqlite(engine: Engine, busy_seconds: float) -> None:
    database = engine.url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        @event.listens_for(engine, "first_connect")
        def _private(_dbapi_connection: Any, _record: Any) -> None:
            # SQLite made the file (0644); its WAL and shared memory take its mode
            for suffix in ("", "-wal", "-shm"):
                private_file(Path(database + suffix))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        reading = connection.get_execution_options().get(READING)
        connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")


def is_unavailable(error: BaseException) -> bool:
    """Is ``error`` the app database being unreachable, restarting, or locked
    past its timeout (as opposed to a bug or bad data)? Such errors end when
    the database is back: callers wait and retry, or answer 503."""
    if isinstance(error, exc.TimeoutError):  # the connection pool is exhausted
        return True
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated or isinstance(error, exc.InterfaceError):
            return True
        if isinstance(error, exc.OperationalError):  # but SQLite also says "no such table"
            return not any(s in str(error.orig) for s in _SCHEMA_ERRORS)
    return False


#: OperationalErrors that are a missing migration or a bug, not an outage
_SCHEMA_ERRORS = ("no such table", "no such column", "syntax error")


def is_schema_missing(error: BaseException) -> bool:
    """Is ``error`` a table that is not there: a database nobody upgraded
    (``dsar db upgrade``)? SQLite's message, PostgreSQL's SQLSTATE 42P01,
    MySQL's error 1146."""
    if not isinstance(error, exc.DBAPIError):
        return False
    orig = error.orig
    if getattr(orig, "sqlstate", None) == "42P01":
        return True
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    return (bool(args) and args[0] == 1146) or "no such table" in str(orig)


def describe_error(exc: BaseException) -> str:
    """``exc`` by type and driver error code only: its message may hold SQL and
    bound values (identifiers), so it never goes into a log line."""
    orig = getattr(exc, "orig", None)
    if orig is None:
        return type(exc).__name__
    code = getattr(orig, "sqlite_errorname", None) or getattr(orig, "sqlstate", None)
    what = f"{type(orig).__module__}.{type(orig).__name__}"
    return f"{type(exc).__name__}: {what}" + (f" {code}" if code else "")


class Outage:
    """Notes that the app database is away: one log line when it is first
    found unreachable (or locked past its timeout), one when it is back, none
    for the calls in between, however many threads make them. ``meanwhile``
    says what the caller does until then (it ends the first line)."""

    def __init__(self, logger: logging.Logger, meanwhile: str) -> None:
        self._log, self._meanwhile = logger, meanwhile
        self._lock = threading.Lock()
        self._since: float | None = None
        self.failures = 0

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self.failures += 1
            if self._since is None:
                self._since = time.monotonic()
                self._log.warning("app database unavailable (%s); %s", describe_error(exc),
                                  self._meanwhile)

    def ended(self) -> None:
        if self._since is None:  # the common case: no lock taken
            return
        with self._lock:
            if self._since is not None:
                self._log.warning("app database available again after %.0f s (%d calls "
                                  "failed meanwhile)", time.monotonic() - self._since,
                                  self.failures)
            self._since, self.failures = None, 0
