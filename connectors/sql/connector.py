"""``SqlTableConnector``: find, plan and erase over the declarative dataset."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Row, Select, Table, create_engine, event, select
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import ColumnElement

from dsar.connector import (
    Action,
    Capability,
    CheckResult,
    Connector,
    ErasurePlan,
    ErasureResult,
    PermanentError,
    PlanItem,
    Record,
    RetryableError,
    Subject,
    check_stop,
)

from .config import KINDS, SqlConfigSchema
from .database import foreign_key_problems
from .dataset import Dataset, TableSpec
from .definitions import DefinitionCache, Definitions
from .erasure import BATCH, carry_out
from .lookup import lookup_warnings, normalised_problems
from .query import json_safe, pseudonym, subject_rows

__all__ = ["SqlTableConnector"]

log = logging.getLogger(__name__)


class SqlTableConnector(Connector):
    """Finds and erases a person's rows in a declarative dataset of tables.

    ``identity_kinds`` on an instance is the union of its tables' kinds.
    ``find`` streams (server-side cursors, the walk done in SQL). ``erase``
    runs in one transaction, children before parents, and is idempotent.
    Table definitions are read once per instance (:mod:`.definitions`), shared
    by the threads using it, and read again after a database error.
    Stops when asked (``Capability.STOP``): between rows in ``find``,
    ``discover`` and ``plan_erasure``, between batches in ``erase``, whose
    transaction is then rolled back (``Stopped.done`` says nothing changed).
    """

    config_schema = SqlConfigSchema
    capabilities = frozenset({Capability.FIND, Capability.ERASE, Capability.DISCOVER,
                              Capability.STOP})
    identity_kinds = KINDS

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, config)
        self.dataset = Dataset.from_config(self.config)
        # per instance: the kinds its tables declare (the class lists the usual ones)
        self.identity_kinds = self.dataset.identity_kinds()
        if not any(spec.discover for spec in self.dataset.tables.values()):
            self.capabilities = frozenset({Capability.FIND, Capability.ERASE, Capability.STOP})
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()
        self._definitions = DefinitionCache(self.dataset)
        self._walk_problems = self.dataset.walk_problems()
        self._erase_problems = self._walk_problems + self.dataset.erase_problems()

    @property
    def engine(self) -> Engine:
        """The instance's engine (its pool), shared by the worker threads:
        made once, under a lock, on first use."""
        engine = self._engine
        if engine is not None:
            return engine
        with self._engine_lock:
            if self._engine is None:
                # hide_parameters: bound values (identifiers) never reach messages or logs;
                # pool_pre_ping: a connection pooled before an outage is replaced, not used
                engine = create_engine(self.config["url"], hide_parameters=True,
                                       pool_pre_ping=True)
                if engine.dialect.name == "sqlite":
                    event.listen(engine, "connect", _sqlite_foreign_keys)
                self._engine = engine
            return self._engine

    def close(self) -> None:
        """Close pooled connections (tests, shutdown). Safe to call twice."""
        with self._engine_lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    # ------------------------------------------------------------ check
    def check(self) -> CheckResult:
        """Every dataset mistake at once, each naming table and column: in the
        dataset itself, then against the database (read afresh). Then, still
        ok, a warning per lookup no index serves, with the statement adding
        one. Never raises."""
        problems = list(self._erase_problems)
        warnings: list[str] = []
        try:
            with self.engine.connect() as conn:
                found = Definitions.read(conn, self.dataset)
                problems += (found.missing + found.erase_problems
                             + foreign_key_problems(conn, self.dataset, found.tables))
                declared, warnings = normalised_problems(conn, self.dataset, found.tables)
                problems += declared
                if not problems:
                    warnings += lookup_warnings(conn, self.dataset, found.tables, found.lookups)
        except SQLAlchemyError as exc:
            problems.append(f"cannot reach the database: {_reason(exc)}")
        except Exception as exc:  # a missing driver, a bad URL: report, never raise
            problems.append(f"cannot use the database: {type(exc).__name__}")
        if problems:
            return CheckResult(False, f"{len(problems)} problem(s): " + "; ".join(problems))
        order = " -> ".join(self.dataset.walk_order())
        message = f"{len(self.dataset.tables)} tables reachable ({order})"
        if warnings:
            message += f"; {len(warnings)} warning(s):\n" + "\n".join(f"  {w}" for w in warnings)
        return CheckResult(True, message)

    def _current(self, conn: Connection, erasing: bool,
                 foreign_keys: bool = False) -> Definitions:
        """The table definitions (read on ``conn`` when there are none); refuses
        (PermanentError) a dataset with mistakes. ``foreign_keys``: look for
        undeclared FOREIGN KEYs too (one query: before every erasure)."""
        found = self._definitions.get(conn)
        problems = list(self._erase_problems if erasing else self._walk_problems)
        problems += found.missing
        if not found.missing:
            problems += found.erase_problems if erasing else found.find_problems
        if not found.missing and foreign_keys and not problems:
            problems += foreign_key_problems(conn, self.dataset, found.tables)
        if problems:
            self._definitions.clear()  # read again next time: the operator may fix it
            raise PermanentError("the dataset has mistakes (see dsar connectors check): "
                                 + "; ".join(problems))
        return found

    def _execute(self, conn: Connection, erasing: bool, build: Callable[[Definitions], Executable]
                 ) -> tuple[Definitions, CursorResult[Any]]:
        """``conn.execute(build(definitions))``; after a schema error (the
        definitions no longer fit the database), once more with definitions
        read again, which refuses the call if the dataset no longer fits."""
        found = self._current(conn, erasing)
        try:
            return found, conn.execute(build(found))
        except DBAPIError as exc:
            if _transient(exc) and not _missing_object(exc):
                raise
        conn.rollback()  # reads only: nothing is lost
        self._definitions.clear()
        found = self._current(conn, erasing)
        return found, conn.execute(build(found))

    def _rows(self, conn: Connection, erasing: bool, build: Callable[[Definitions], Select[Any]]
              ) -> tuple[Definitions, Iterator[Row[Any]]]:
        """The rows of ``build(definitions)``: a subject's usual few in one
        round trip (at most ``BATCH`` + 1, buffered), more through a
        server-side cursor that streams ``BATCH`` at a time (on PostgreSQL it
        costs round trips of its own, so it is kept for the subjects who need
        it). Memory stays bounded either way."""
        found, first = self._execute(conn, erasing, lambda f: build(f).limit(BATCH + 1))
        rows = first.all()
        if len(rows) <= BATCH:
            return found, iter(rows)
        found, streamed = self._execute(
            conn, erasing, lambda f: build(f).execution_options(yield_per=BATCH))
        return found, _closing(streamed)

    # ------------------------------------------------------------- find
    def find(self, subject: Subject) -> Iterator[Record]:
        """Yield one record per row of the subject, parents' tables first, streaming."""
        if not subject.kinds & self.identity_kinds:
            return
        with self._database_errors("finding"), self.engine.connect() as conn:
            self._current(conn, erasing=False)
            for name in self.dataset.walk_order():
                yield from self._find_in(conn, name, subject)

    def _find_in(self, conn: Connection, name: str, subject: Subject) -> Iterator[Record]:
        spec = self.dataset.tables[name]
        if not self._reaches(name, subject):
            return

        def query(found: Definitions) -> Select[Any]:
            table, where = found.tables[name], self._where(found, name, subject)
            return select(table).where(where).order_by(table.c[spec.key])

        count = 0
        _found, rows = self._rows(conn, False, query)
        for row in rows:
            check_stop()
            values = row._mapping
            count += 1
            yield Record(name, str(values[spec.key]), spec.category,
                         {column: json_safe(value) for column, value in values.items()})
        log.debug("sql %s: %d rows in table %s", self.name, count, name)

    # --------------------------------------------------------- discover
    def discover(self, subject: Subject) -> dict[str, set[str]]:
        """The identity columns' values on the subject's rows of the tables
        marked ``discover = true`` (e.g. the phone on the customer row found
        by email). Changes nothing."""
        found: dict[str, set[str]] = {}
        if not subject.kinds & self.identity_kinds:
            return found
        with self._database_errors("discovering"), self.engine.connect() as conn:
            self._current(conn, erasing=False)
            for name in self.dataset.walk_order():
                for kind, value in self._identifiers_in(conn, name, subject):
                    found.setdefault(kind, set()).add(value)
        return found

    def _identifiers_in(self, conn: Connection, name: str,
                        subject: Subject) -> Iterator[tuple[str, str]]:
        spec = self.dataset.tables[name]
        if not spec.discover or not self._reaches(name, subject):
            return
        kinds = list(spec.identity)

        def query(found: Definitions) -> Select[Any]:
            table, where = found.tables[name], self._where(found, name, subject)
            return (select(*(table.c[spec.identity[k]] for k in kinds)).where(where)
                    .order_by(table.c[spec.key]))

        _found, rows = self._rows(conn, False, query)
        for row in rows:
            check_stop()
            for kind, value in zip(kinds, row, strict=True):
                if value is not None and str(value).strip():
                    yield kind, str(value).strip()

    # ------------------------------------------------------------ erase
    def plan_erasure(self, subject: Subject) -> ErasurePlan:
        """One item per found row: DELETE, MASK (how, per column) or KEEP (the
        hold and its reason). Keyed hashes are computed here, once, so erasing
        twice writes the same pseudonyms. Changes nothing."""
        plan = ErasurePlan(connector=self.name)
        if not subject.kinds & self.identity_kinds:
            return plan
        pseudonyms: dict[str, dict[str, dict[str, str]]] = {}
        with self._database_errors("planning"), self.engine.connect() as conn:
            self._current(conn, erasing=True, foreign_keys=True)
            for name in self.dataset.walk_order():
                plan.items.extend(self._plan_in(conn, name, subject, pseudonyms))
        if pseudonyms:
            plan.extra["pseudonyms"] = pseudonyms
        return plan

    def _plan_in(self, conn: Connection, name: str, subject: Subject,
                 pseudonyms: dict[str, dict[str, dict[str, str]]]) -> Iterator[PlanItem]:
        if not self._reaches(name, subject):
            return
        spec = self.dataset.tables[name]
        action, detail = spec.row_action, self._detail(spec)
        holds = self._holds(spec) if action is Action.KEEP else ()
        hashed = [c for c, s in spec.masked.items() if s.how == "hash"]
        kinds = {column: kind for kind, column in spec.identity.items()}

        def query(found: Definitions) -> Select[Any]:
            table, where = found.tables[name], self._where(found, name, subject)
            return (select(table.c[spec.key], *(table.c[c] for c in hashed)).where(where)
                    .order_by(table.c[spec.key]))

        found, rows = self._rows(conn, True, query)
        table = found.tables[name]
        for row in rows:
            check_stop()
            key = str(row[0])
            values: dict[str, str] = {
                c: pseudonym(self.config["hash_key"], v, kinds.get(c), _length(table, c))
                for c, v in zip(hashed, tuple(row)[1:], strict=True) if v is not None}
            if values:
                pseudonyms.setdefault(name, {})[key] = values
            yield PlanItem(name, key, action, detail, holds=holds)

    def _detail(self, spec: TableSpec) -> str:
        """What happens to every planned row of a table; the same for each row."""
        masked = ", ".join(s.describe(c) for c, s in spec.masked.items())
        if spec.row_action is Action.DELETE:
            exits = [f"{r.table}.{r.column}" for r in self.dataset.exits()
                     if r.parent == spec.name]
            return "row deleted" + (f"; references to it in {', '.join(exits)} set to NULL"
                                    if exits else "")
        if spec.row_action is Action.MASK:
            return f"masked: {masked}"
        kept = "; ".join(f"hold {h}: {self.dataset.hold_reason(spec, h)}"
                         for h in self._holds(spec))
        return kept + (f"; masked: {masked}" if masked else "")

    @staticmethod
    def _holds(spec: TableSpec) -> tuple[str, ...]:
        """The holds that keep a kept table's rows: the table's own, then those
        its kept identity columns name (the requester's notice explains each)."""
        holds = [spec.hold] if spec.erase == "keep" and spec.hold else []
        holds += sorted({s.value or "" for c, s in spec.columns.items()
                         if c in spec.kept_identity} - set(holds))
        return tuple(holds)

    def erase(self, plan: ErasurePlan) -> ErasureResult:
        """Carry out the plan in one transaction (see :mod:`.erasure` for the
        order). Rows already gone or already masked are not an error. Asked to
        stop, it rolls the transaction back and raises ``Stopped`` with
        ``done=ErasureResult()``: the store is as before the call."""
        if plan.connector != self.name:
            raise PermanentError(f"the plan is for connector {plan.connector!r}, not {self.name!r}")
        if not plan.items:
            return ErasureResult()
        try:
            with self._database_errors("erasing"):
                deleted, masked = self._erase_retrying(plan)
        except IntegrityError:
            raise PermanentError("the database refused the erasure (a constraint the dataset "
                                 "does not describe); nothing was changed") from None
        log.info("sql %s: erased, %d deleted, %d masked", self.name, deleted, masked)
        return ErasureResult(deleted=deleted, masked=masked, kept=len(plan.kept()))


    def _erase_retrying(self, plan: ErasurePlan) -> tuple[int, int]:
        """One transaction; after a schema error, once more with the definitions
        read again (which refuses the erasure if the dataset no longer fits).
        A refused constraint reads them again to name the mistake, if one."""
        try:
            return self._erase_once(plan)
        except DBAPIError as exc:
            self._definitions.clear()
            refused = isinstance(exc, IntegrityError)
            if not refused and _transient(exc) and not _missing_object(exc):
                raise
            error = exc
        if refused:  # outside the except: a PermanentError here chains to nothing
            with self.engine.connect() as conn:
                self._current(conn, erasing=True, foreign_keys=True)
            raise error
        return self._erase_once(plan)

    def _erase_once(self, plan: ErasurePlan) -> tuple[int, int]:
        with self.engine.begin() as conn:
            found = self._current(conn, erasing=True, foreign_keys=True)
            return carry_out(conn, self.dataset, found.tables, plan)

    def _where(self, found: Definitions, name: str, subject: Subject) -> ColumnElement[bool]:
        where = subject_rows(self.dataset, found.tables, name, subject, found.targets)
        if where is None:  # _reaches said otherwise: a bug
            raise PermanentError(f"table {name}: no lookup for this subject")
        return where

    def _reaches(self, name: str, subject: Subject) -> bool:
        """Can the subject have rows in table ``name`` (an identifier of a kind
        it or a followed parent uses)? Without the database."""
        return self._reachable(name, subject, ())

    def _reachable(self, name: str, subject: Subject, path: tuple[str, ...]) -> bool:
        spec = self.dataset.tables[name]
        if any(subject.values(kind) for kind in spec.identity):
            return True
        return any(self._reachable(ref.parent, subject, (*path, name))
                   for ref in spec.references
                   if ref.follow and ref.parent in self.dataset.tables and ref.parent not in path)

    @contextmanager
    def _database_errors(self, doing: str) -> Iterator[None]:
        """:func:`_database_errors`, dropping the definitions on any database
        error (a changed schema shows up as one)."""
        try:
            with _database_errors(doing):
                yield
        except (RetryableError, PermanentError, IntegrityError):
            self._definitions.clear()
            raise


def _length(table: Table, column: str) -> int | None:
    return getattr(table.c[column].type, "length", None)


def _sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    """SQLite enforces FOREIGN KEYs only when asked, per connection."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@contextmanager
def _database_errors(doing: str) -> Iterator[None]:
    """Turn the database's errors into the contract's, ``from None``.

    Transient ones (the server down or restarting, a lost connection, a connect or
    statement timeout, a lock or pool wait that ran out) are retryable. The message
    names the driver's error class and code, never its text: that may quote values.
    IntegrityError passes through for ``erase`` to explain.
    """
    try:
        yield
    except IntegrityError:
        raise
    except SQLAlchemyError as exc:
        code = _code(exc)
        if _transient(exc):
            raise RetryableError(f"database unavailable while {doing} ({code}); "
                                 "it will be tried again") from None
        raise PermanentError(f"database error while {doing} ({code})") from None


def _missing_object(exc: SQLAlchemyError) -> bool:
    """A table or column the statement names is not there (SQLite and MariaDB
    report it as an OperationalError, which otherwise means the database is away)."""
    if not isinstance(exc, OperationalError):
        return False
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", None) or ("",)
    return args[0] in (1054, 1146) or str(orig).startswith(("no such column", "no such table"))


def _transient(exc: SQLAlchemyError) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | PoolTimeout | DisconnectionError)


def _code(exc: SQLAlchemyError) -> str:
    """The driver's error class and code (SQLSTATE, MySQL errno, SQLite name)."""
    orig = getattr(exc, "orig", None)
    if orig is None:
        return type(exc).__name__
    code = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None)
    if code is None and orig.args and isinstance(orig.args[0], int):
        code = orig.args[0]
    lost = ", connection lost" if getattr(exc, "connection_invalidated", False) else ""
    return f"{type(orig).__name__}{f' {code}' if code else ''}{lost}"


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's first line, for ``check()`` (which queries no subject's values)."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return first[:200]


def _closing(result: CursorResult[Any]) -> Iterator[Row[Any]]:
    """Iterate ``result``, closing its server-side cursor however the loop ends
    (a stop, a consumer that gives up)."""
    with result:
        yield from result
