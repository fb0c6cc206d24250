"""``sql``: a person's rows in tables of any SQLAlchemy-reachable database.

Configuration (one ``[connectors.<name>]`` table in the connector file)::

    type = "sql"
    url = "postgresql+psycopg://crm@db/crm"      # secret: may hold a password
    [[connectors.crm.tables]]
    name = "customers"
    key = "id"                                   # primary key column (default "id")
    category = "profile"                         # export category (default "profile")
    identity = { email = "email", phone = "phone" }
    erase = "null"                               # delete | null | keep
    null_columns = ["email", "phone", "name"]    # null: must cover every identity column
    [[connectors.crm.tables]]
    name = "invoices"
    identity = { email = "billing_email" }
    erase = "keep"
    hold = "tax-records"
    reason = "invoices are kept 10 years (tax law)"

Matching compares normalised values in SQL: emails lower-cased and trimmed,
phone numbers with spaces, dashes, dots and brackets removed, other kinds
trimmed text. Only SQLAlchemy Core is used, so the connector is dialect-neutral.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import logging
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import Column, MetaData, String, Table, cast, create_engine, func, or_, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import NoSuchTableError, OperationalError, SQLAlchemyError
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
)

log = logging.getLogger(__name__)

KINDS = frozenset({"email", "phone", "customer_id"})
BATCH = 500


class TableSchema(Schema):
    """One table: where the subject's rows are and what erasure does to them."""

    name = fields.String(required=True, validate=validate.Length(min=1))
    key = fields.String(load_default="id")
    category = fields.String(load_default="profile")
    identity = fields.Dict(
        keys=fields.String(validate=validate.OneOf(sorted(KINDS))),
        values=fields.String(validate=validate.Length(min=1)),
        required=True,
        validate=validate.Length(min=1),
    )
    erase = fields.String(required=True, validate=validate.OneOf(["delete", "null", "keep"]))
    null_columns = fields.List(fields.String(), load_default=list)
    hold = fields.String(load_default=None)
    reason = fields.String(load_default=None)

    @validates_schema
    def _erase_options(self, data: dict[str, Any], **_: Any) -> None:
        if data["erase"] == "null":
            missing = sorted(set(data["identity"].values()) - set(data["null_columns"]))
            if missing:
                raise ValidationError(
                    "null_columns must include every identity column; missing: "
                    + ", ".join(missing),
                    "null_columns",
                )
            if data["key"] in data["null_columns"]:
                raise ValidationError("the key column cannot be nulled", "null_columns")
        if data["erase"] == "keep" and not (data.get("hold") and data.get("reason")):
            raise ValidationError("erase = keep needs a hold name and a reason", "hold")


class SqlConfigSchema(Schema):
    url = fields.String(required=True, validate=validate.Length(min=1), metadata={"secret": True})
    tables = fields.List(fields.Nested(TableSchema), required=True, validate=validate.Length(min=1))

    @validates_schema
    def _unique_tables(self, data: dict[str, Any], **_: Any) -> None:
        names = [t["name"] for t in data["tables"]]
        if len(names) != len(set(names)):
            raise ValidationError("each table may be listed once", "tables")


def json_safe(value: Any) -> Any:
    """A JSON-serialisable form of a column value (datetimes as ISO 8601,
    decimals and UUIDs as strings, bytes as base64)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


def _normalised(column: ColumnElement, kind: str) -> ColumnElement:
    """The SQL expression of a column in :func:`normalise_identifier` form."""
    text = func.trim(cast(column, String))
    if kind == "email":
        return func.lower(text)
    if kind == "phone":
        for char in (" ", "-", ".", "(", ")"):
            text = func.replace(text, char, "")
    return text


def _key_value(column: Column, key: str) -> Any:
    """Convert a record key back to the key column's Python type."""
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return key
    return python_type(key) if python_type in (int, str) else key


class SqlTableConnector(Connector):
    """Finds and erases a person's rows in configured tables.

    ``identity_kinds`` on an instance is the union of its tables' kinds.
    ``erase`` runs in one transaction over all tables and is idempotent
    (deleting or nulling a row twice changes nothing the second time).
    """

    config_schema = SqlConfigSchema
    capabilities = frozenset({Capability.FIND, Capability.ERASE})
    identity_kinds = KINDS

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, config)
        self.tables: dict[str, dict[str, Any]] = {t["name"]: t for t in self.config["tables"]}
        # per instance: the kinds its tables declare (the class lists every kind it could)
        kinds = frozenset(k for t in self.tables.values() for k in t["identity"])
        self.identity_kinds = kinds
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            # hide_parameters: bound values (identifiers) never reach messages or logs
            self._engine = create_engine(self.config["url"], hide_parameters=True)
        return self._engine

    def close(self) -> None:
        """Close pooled connections (tests, shutdown). Safe to call twice."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # ------------------------------------------------------------ check
    def check(self) -> CheckResult:
        """Connect and reflect every table; report the first missing table or
        column, or a null column that is NOT NULL. Never raises."""
        try:
            with self.engine.connect() as conn:
                for spec in self.tables.values():
                    problem = self._table_problem(conn, spec)
                    if problem:
                        return CheckResult(False, problem)
        except SQLAlchemyError as exc:
            return CheckResult(False, f"cannot reach the database: {_reason(exc)}")
        except Exception as exc:  # a missing driver, a bad URL: report, never raise
            return CheckResult(False, f"cannot use the database: {type(exc).__name__}")
        return CheckResult(True, f"{len(self.tables)} tables reachable")

    def _table_problem(self, conn: Connection, spec: dict[str, Any]) -> str | None:
        try:
            table = self._table(conn, spec)
        except PermanentError as exc:
            return str(exc)
        for column in spec["null_columns"]:
            if not table.c[column].nullable:
                return f"column {spec['name']}.{column} is NOT NULL and cannot be nulled"
        return None

    # ------------------------------------------------------------- find
    def find(self, subject: Subject) -> Iterator[Record]:
        """Yield one record per matching row, table by table, streaming."""
        try:
            with self.engine.connect() as conn:
                for spec in self.tables.values():
                    yield from self._find_in(conn, spec, subject)
        except OperationalError as exc:
            raise RetryableError(f"database unavailable: {_reason(exc)}") from None
        except SQLAlchemyError as exc:
            raise PermanentError(f"database error while finding: {type(exc).__name__}") from None

    def _find_in(
        self, conn: Connection, spec: dict[str, Any], subject: Subject
    ) -> Iterator[Record]:
        wanted = {kind: column for kind, column in spec["identity"].items() if subject.values(kind)}
        if not wanted:
            return
        table = self._table(conn, spec)
        conditions = [
            _normalised(table.c[column], kind).in_(sorted(subject.values(kind)))
            for kind, column in wanted.items()
        ]
        query = select(table).where(or_(*conditions)).order_by(table.c[spec["key"]])
        result = conn.execution_options(yield_per=BATCH).execute(query)
        count = 0
        for row in result:
            values = {name: json_safe(value) for name, value in row._mapping.items()}
            count += 1
            yield Record(spec["name"], str(row._mapping[spec["key"]]), spec["category"], values)
        log.debug("sql %s: %d rows in table %s", self.name, count, spec["name"])

    def _table(self, conn: Connection, spec: dict[str, Any]) -> Table:
        try:
            table = Table(spec["name"], MetaData(), autoload_with=conn)
        except NoSuchTableError:
            raise PermanentError(f"table {spec['name']!r} does not exist") from None
        for column in sorted({spec["key"], *spec["identity"].values(), *spec["null_columns"]}):
            if column not in table.c:
                raise PermanentError(f"table {spec['name']!r} has no column {column!r}")
        return table

    # ------------------------------------------------------------ erase
    def plan_erasure(self, subject: Subject) -> ErasurePlan:
        """One item per found row: DELETE, MASK (columns nulled) or KEEP
        (the table's hold). Changes nothing."""
        plan = ErasurePlan(connector=self.name)
        for record in self.find(subject):
            plan.items.append(self._plan_item(record))
        return plan

    def _plan_item(self, record: Record) -> PlanItem:
        spec = self.tables[record.collection]
        if spec["erase"] == "delete":
            return PlanItem(record.collection, record.key, Action.DELETE, "row deleted")
        if spec["erase"] == "null":
            columns = ", ".join(spec["null_columns"])
            return PlanItem(record.collection, record.key, Action.MASK, f"set to NULL: {columns}")
        return PlanItem(
            record.collection, record.key, Action.KEEP, f"hold {spec['hold']}: {spec['reason']}"
        )

    def erase(self, plan: ErasurePlan) -> ErasureResult:
        """Delete or null the planned rows of every table in one transaction.
        Rows already gone or already nulled are not an error."""
        deleted = masked = 0
        try:
            with self.engine.begin() as conn:
                for name, action, keys in _group(plan):
                    spec = self.tables.get(name)
                    if spec is None:
                        raise PermanentError(
                            f"the plan names table {name!r}, which is not configured"
                        )
                    deleted_n, masked_n = self._erase_rows(conn, spec, action, keys)
                    deleted, masked = deleted + deleted_n, masked + masked_n
        except OperationalError as exc:
            raise RetryableError(f"database unavailable: {_reason(exc)}") from None
        except SQLAlchemyError as exc:
            raise PermanentError(f"database error while erasing: {type(exc).__name__}") from None
        log.info("sql %s: erased, %d deleted, %d masked", self.name, deleted, masked)
        return ErasureResult(deleted=deleted, masked=masked, kept=len(plan.kept()))

    def _erase_rows(
        self, conn: Connection, spec: dict[str, Any], action: Action, keys: list[str]
    ) -> tuple[int, int]:
        if action is Action.KEEP:
            return 0, 0
        table = self._table(conn, spec)
        key_col = table.c[spec["key"]]
        total = 0
        for start in range(0, len(keys), BATCH):
            where = key_col.in_([_key_value(key_col, k) for k in keys[start : start + BATCH]])
            if action is Action.DELETE:
                total += conn.execute(table.delete().where(where)).rowcount
            else:
                if not spec["null_columns"]:
                    raise PermanentError(f"table {spec['name']!r} has no null_columns to mask with")
                values = dict.fromkeys(spec["null_columns"])
                total += conn.execute(table.update().where(where).values(values)).rowcount
        return (total, 0) if action is Action.DELETE else (0, total)


def _group(plan: ErasurePlan) -> Iterator[tuple[str, Action, list[str]]]:
    """(table, action, keys) groups of a plan, in a stable order."""
    groups: dict[tuple[str, Action], list[str]] = {}
    for item in plan.items:
        groups.setdefault((item.collection, item.action), []).append(item.key)
    for (name, action), keys in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1].value)):
        yield name, action, keys


def _reason(exc: SQLAlchemyError) -> str:
    """A short reason without SQL parameters (the engine hides them anyway)."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return first[:200]
