"""``SqlTableConnector``: find, plan and erase over the declarative dataset."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Table, create_engine, event, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

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
from .database import missing_columns, reflect, schema_problems
from .dataset import Dataset, TableSpec
from .erasure import BATCH, carry_out
from .query import json_safe, pseudonym, subject_rows

__all__ = ["SqlTableConnector"]

log = logging.getLogger(__name__)


class SqlTableConnector(Connector):
    """Finds and erases a person's rows in a declarative dataset of tables.

    ``identity_kinds`` on an instance is the union of its tables' kinds.
    ``find`` streams (server-side cursors, the walk done in SQL). ``erase``
    runs in one transaction, children before parents, and is idempotent.
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

    @property
    def engine(self) -> Engine:
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
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # ------------------------------------------------------------ check
    def check(self) -> CheckResult:
        """Every dataset mistake at once, each naming table and column: in the
        dataset itself, then against the database. Never raises."""
        problems = self.dataset.walk_problems() + self.dataset.erase_problems()
        try:
            with self.engine.connect() as conn:
                tables, missing = reflect(conn, self.dataset)
                problems += missing + schema_problems(conn, self.dataset, tables)
        except SQLAlchemyError as exc:
            problems.append(f"cannot reach the database: {_reason(exc)}")
        except Exception as exc:  # a missing driver, a bad URL: report, never raise
            problems.append(f"cannot use the database: {type(exc).__name__}")
        if problems:
            return CheckResult(False, f"{len(problems)} problem(s): " + "; ".join(problems))
        order = " -> ".join(self.dataset.walk_order())
        return CheckResult(True, f"{len(self.dataset.tables)} tables reachable ({order})")

    def _tables(self, conn: Connection, erasing: bool) -> dict[str, Table]:
        """The reflected tables; refuses (PermanentError) a dataset with mistakes."""
        problems = self.dataset.walk_problems()
        if erasing:
            problems += self.dataset.erase_problems()
        tables, missing = reflect(conn, self.dataset)
        problems += missing
        if not missing:
            problems += (schema_problems(conn, self.dataset, tables) if erasing
                         else missing_columns(self.dataset, tables))
        if problems:
            raise PermanentError("the dataset has mistakes (see dsar connectors check): "
                                 + "; ".join(problems))
        return tables

    # ------------------------------------------------------------- find
    def find(self, subject: Subject) -> Iterator[Record]:
        """Yield one record per row of the subject, parents' tables first, streaming."""
        if not subject.kinds & self.identity_kinds:
            return
        with _database_errors("finding"), self.engine.connect() as conn:
            tables = self._tables(conn, erasing=False)
            for name in self.dataset.walk_order():
                yield from self._find_in(conn, tables, name, subject)

    def _find_in(self, conn: Connection, tables: dict[str, Table], name: str,
                 subject: Subject) -> Iterator[Record]:
        where = subject_rows(self.dataset, tables, name, subject)
        if where is None:
            return
        spec, table = self.dataset.tables[name], tables[name]
        query = select(table).where(where).order_by(table.c[spec.key])
        count = 0
        with conn.execute(query.execution_options(yield_per=BATCH)) as result:
            for row in result:
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
        with _database_errors("discovering"), self.engine.connect() as conn:
            tables = self._tables(conn, erasing=False)
            for name in self.dataset.walk_order():
                for kind, value in self._identifiers_in(conn, tables, name, subject):
                    found.setdefault(kind, set()).add(value)
        return found

    def _identifiers_in(self, conn: Connection, tables: dict[str, Table], name: str,
                        subject: Subject) -> Iterator[tuple[str, str]]:
        spec, table = self.dataset.tables[name], tables[name]
        where = subject_rows(self.dataset, tables, name, subject) if spec.discover else None
        if where is None:
            return
        kinds = list(spec.identity)
        query = select(*(table.c[spec.identity[k]] for k in kinds)).where(where)
        with conn.execute(query.execution_options(yield_per=BATCH)) as result:
            for row in result:
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
        with _database_errors("planning"), self.engine.connect() as conn:
            tables = self._tables(conn, erasing=True)
            for name in self.dataset.walk_order():
                plan.items.extend(self._plan_in(conn, tables, name, subject, pseudonyms))
        if pseudonyms:
            plan.extra["pseudonyms"] = pseudonyms
        return plan

    def _plan_in(self, conn: Connection, tables: dict[str, Table], name: str, subject: Subject,
                 pseudonyms: dict[str, dict[str, dict[str, str]]]) -> Iterator[PlanItem]:
        where = subject_rows(self.dataset, tables, name, subject)
        if where is None:
            return
        spec, table = self.dataset.tables[name], tables[name]
        action, detail = spec.row_action, self._detail(spec)
        hashed = [c for c, s in spec.masked.items() if s.how == "hash"]
        kinds = {column: kind for kind, column in spec.identity.items()}
        query = select(table.c[spec.key], *(table.c[c] for c in hashed)).where(where)
        query = query.order_by(table.c[spec.key]).execution_options(yield_per=BATCH)
        with conn.execute(query) as result:  # closes the server-side cursor on a stop
            for row in result:
                check_stop()
                key = str(row[0])
                values = {c: pseudonym(self.config["hash_key"], v, kinds.get(c),
                                       _length(table, c))
                          for c, v in zip(hashed, row[1:], strict=True) if v is not None}
                if values:
                    pseudonyms.setdefault(name, {})[key] = values
                yield PlanItem(name, key, action, detail)

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
        holds = [spec.hold] if spec.erase == "keep" and spec.hold else []
        holds += sorted({s.value or "" for c, s in spec.columns.items()
                         if c in spec.kept_identity} - set(holds))
        kept = "; ".join(f"hold {h}: {self.dataset.hold_reason(spec, h)}" for h in holds)
        return kept + (f"; masked: {masked}" if masked else "")

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
            with _database_errors("erasing"), self.engine.begin() as conn:
                tables = self._tables(conn, erasing=True)
                deleted, masked = carry_out(conn, self.dataset, tables, plan)
        except IntegrityError:
            raise PermanentError("the database refused the erasure (a constraint the dataset "
                                 "does not describe); nothing was changed") from None
        log.info("sql %s: erased, %d deleted, %d masked", self.name, deleted, masked)
        return ErasureResult(deleted=deleted, masked=masked, kept=len(plan.kept()))


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
