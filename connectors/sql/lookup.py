"""How the subject's rows are looked up, and whether an index serves it.

An identity column is compared in normalised form (``lower(trim(email))``),
through one of, in this order:

* the column itself, when the dataset declares it ``normalised = true`` (and
  ``check()`` proves it: no row differs from its normalised form), so a
  plain index serves the lookup;
* a generated column of the same table holding exactly the normalised
  expression, with an index (MariaDB/MySQL, which have no expression indexes);
* the normalised expression, which an expression index on exactly that
  expression serves (PostgreSQL, SQLite).

Reference columns are compared as they are. :func:`lookup_warnings` names
every lookup no index serves, with the statement that adds one for this
database; :func:`normalised_problems` checks what the dataset declares.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, LargeBinary, Table, UniqueConstraint, cast, column, literal, select
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.elements import ColumnElement

from .dataset import Dataset, TableSpec
from .query import is_text, normalised

__all__ = ["Lookup", "identity_lookups", "lookup_warnings", "normalised_problems"]

#: what a normalised value looks like, per kind (for messages)
FORMS = {"email": "lower-case without surrounding spaces",
         "phone": "without spaces, dashes, dots or brackets"}
MAX_NAME = 60  # below PostgreSQL's 63 and MariaDB's 64 characters
_FRESH = itertools.count()


@dataclass(frozen=True)
class Lookup:
    """How ``table.column`` (of identity ``kind``) is compared: through the
    column ``via`` (the column itself or a generated one), or, when ``via`` is
    None, through the normalised expression."""

    table: str
    column: str
    kind: str
    via: str | None

    def target(self, table: Table) -> ColumnElement[Any]:
        if self.via is not None:
            return table.c[self.via]
        return normalised(table.c[self.column], self.kind)


def identity_lookups(dialect: Dialect, dataset: Dataset,
                     tables: Mapping[str, Table]) -> dict[tuple[str, str], Lookup]:
    """(table, kind) -> its lookup, for the identity columns that exist."""
    found = {}
    for name, table in tables.items():
        spec = dataset.tables[name]
        for kind, col in spec.identity.items():
            if col in table.c:
                found[(name, kind)] = Lookup(name, col, kind, _via(dialect, spec, table, col, kind))
    return found


def _via(dialect: Dialect, spec: TableSpec, table: Table, col: str, kind: str) -> str | None:
    if col in spec.normalised and is_text(table.c[col]):
        return col
    wanted = _canonical(expression_sql(dialect, table.c[col], kind))
    for generated in table.c:
        computed = generated.computed
        if (computed is not None and _canonical(str(computed.sqltext)) == wanted
                and leads_index(table, generated.name)):
            return str(generated.name)
    return None


def expression_sql(dialect: Dialect, col: Column[Any], kind: str) -> str:
    """The normalised expression as an index or generated column states it
    (the bare column name, constants inline)."""
    bare = normalised(column(col.name, col.type), kind)
    return str(bare.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _canonical(sql: str) -> str:
    """An expression as MariaDB gives it back (``lcase(trim(`email`))``) and as
    we write it (``lower(trim(email))``) in one comparable form."""
    sql = re.sub(r"\s+charset\s+\w+", "", sql.lower().replace("`", "").replace('"', ""))
    sql = re.sub(r"\blcase\(", "lower(", sql)
    sql = re.sub(r"\s+(?=(?:[^']*'[^']*')*[^']*$)", "", sql)  # spaces outside quotes
    while sql.startswith("(") and _closes_at_end(sql):
        sql = sql[1:-1]
    return sql


def _closes_at_end(sql: str) -> bool:
    depth = 0
    for i, char in enumerate(sql):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return i == len(sql) - 1
    return False


def leads_index(table: Table, name: str) -> bool:
    """Is ``name`` the first column of the primary key, an index or a unique
    constraint (so that ``name IN (...)`` reads only the matching rows)?"""
    firsts: list[Any] = [next(iter(table.primary_key.columns), None)]
    firsts += [next(iter(index.expressions), None) for index in table.indexes]
    firsts += [next(iter(c.columns), None) for c in table.constraints
               if isinstance(c, UniqueConstraint)]
    return any(isinstance(first, Column) and first.name == name for first in firsts)


# --------------------------------------------------------------- check()
def lookup_warnings(conn: Connection, dataset: Dataset, tables: Mapping[str, Table],
                    lookups: Mapping[tuple[str, str], Lookup]) -> list[str]:
    """One warning per identity and reference column whose lookup reads the
    whole table, with the statement that fixes it. Run last on ``conn``
    (PostgreSQL's test changes a setting for the rest of its transaction)."""
    warnings = []
    for lookup in lookups.values():
        table = tables[lookup.table]
        if lookup.via is not None:
            if not leads_index(table, lookup.via):
                warnings.append(_warning(conn.dialect, table, lookup.via))
        elif not _expression_served(conn, table, lookup.target(table)):
            warnings.append(_warning(conn.dialect, table, lookup.column, lookup.kind))
    for name, col in sorted(_reference_columns(dataset, tables)):
        if not leads_index(tables[name], col):
            warnings.append(_warning(conn.dialect, tables[name], col))
    return warnings


def _reference_columns(dataset: Dataset, tables: Mapping[str, Table]) -> set[tuple[str, str]]:
    return {(ref.table, ref.column) for ref in dataset.references
            if ref.parent in dataset.tables and ref.table in tables
            and ref.column in tables[ref.table].c}


def _expression_served(conn: Connection, table: Table, target: ColumnElement[Any]) -> bool:
    """Would ``target IN (...)`` read the table through an index? Asked of the
    database's planner, which knows its expression indexes exactly."""
    query = select(literal(1)).select_from(table).where(target.in_([""]))
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # so a small table says too
        plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + sql).scalar()
        nodes: Any = json.loads(plan) if isinstance(plan, str) else plan
        return any("Index Cond" in node for node in _plan_nodes(nodes[0]["Plan"]))
    if conn.dialect.name == "sqlite":
        # a new text each time: Python's sqlite3 would reuse a prepared EXPLAIN,
        # which SQLite does not prepare again when an index was added since
        sql += f" /* {next(_FRESH)} */"
        steps = [str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
        return any(step.startswith("SEARCH") for step in steps)
    return False  # MariaDB/MySQL: no expression indexes (a generated column is the way)


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


def _warning(dialect: Dialect, table: Table, col: str, kind: str | None = None) -> str:
    what = col if kind is None else expression_sql(dialect, table.c[col], kind)
    return (f"{table.name}.{col}: every lookup reads the whole table (no index on {what}); "
            f"fix: {fix_statement(dialect, table, col, kind)}")


def fix_statement(dialect: Dialect, table: Table, col: str, kind: str | None = None) -> str:
    """The statement adding an index that serves the lookup of ``col``: on the
    column (``kind`` None), or on its normalised expression for ``kind``."""
    quote = dialect.identifier_preparer.quote
    if kind is None:
        return (f"CREATE INDEX {quote(_name('ix', table.name, col))} ON {quote(table.name)} "
                f"({quote(col)})")
    expression = expression_sql(dialect, table.c[col], kind)
    index = quote(_name("ix", table.name, col, "norm"))
    if dialect.name not in ("mysql", "mariadb"):
        return f"CREATE INDEX {index} ON {quote(table.name)} ({expression})"
    length = getattr(table.c[col].type, "length", None) if is_text(table.c[col]) else None
    generated = quote(_name(col, "norm"))
    return (f"ALTER TABLE {quote(table.name)} ADD COLUMN {generated} VARCHAR({length or 255}) "
            f"AS ({expression}) VIRTUAL, ADD INDEX {index} ({generated})")


def _name(*parts: str) -> str:
    return "_".join(parts)[:MAX_NAME]


def normalised_problems(conn: Connection, dataset: Dataset,
                        tables: Mapping[str, Table]) -> tuple[list[str], list[str]]:
    """(problems, warnings) about columns declared ``normalised``: a row whose
    value differs from its normalised form (one query per column, stopping at
    the first such row), a fixed erasure value that is not normalised, a
    declaration on a column that is not text (ignored: compared as text)."""
    problems: list[str] = []
    warnings: list[str] = []
    for name, table in tables.items():
        spec = dataset.tables[name]
        for kind, col in spec.identity.items():
            if col not in spec.normalised or col not in table.c:
                continue
            where = f"{name}.{col}: declared normalised, but"
            if not is_text(table.c[col]):
                warnings.append(f"{where} not a text column: compared as text, normalised "
                                "in SQL as if not declared")
                continue
            if _not_normalised(conn, table.c[col], kind):
                form = FORMS.get(kind, "without surrounding spaces")
                problems.append(f"{where} holds values that are not ({form}): those rows "
                                "would not be found (normalise the column, or drop "
                                "normalised = true)")
            strategy = spec.columns.get(col)
            if strategy is not None and strategy.how == "fixed" and (
                    _sql_normalised(kind, strategy.value or "") != strategy.value):
                problems.append(f"{where} its fixed erasure value is not")
    return problems, warnings


def _not_normalised(conn: Connection, col: Column[Any], kind: str) -> bool:
    stored: ColumnElement[Any] = col
    wanted = normalised(col, kind)
    if conn.dialect.name in ("mysql", "mariadb"):  # byte for byte: ignore collations
        stored, wanted = cast(stored, LargeBinary), cast(wanted, LargeBinary)
    elif conn.dialect.name == "sqlite":
        stored = col.collate("BINARY")
    query = select(literal(1)).select_from(col.table).where(col.is_not(None), stored != wanted)
    query = query.limit(1)
    return conn.execute(query).first() is not None


def _sql_normalised(kind: str, value: str) -> str:
    """What the SQL normalisation makes of a value (trim removes spaces only)."""
    value = value.strip(" ")
    if kind == "email":
        return value.lower()
    if kind == "phone":
        for char in (" ", "-", ".", "(", ")"):
            value = value.replace(char, "")
    return value
