"""The dataset against the real database: reflection and schema mistakes.

:func:`reflect` loads the configured tables; :func:`table_problems` compares
the dataset with them (missing tables and columns, a strategy the column cannot
take, an unfollowed reference whose column cannot be set to NULL), and
:func:`foreign_key_problems` with the database's own FOREIGN KEYs into the
dataset's tables (one erasure would break or cascade through because the
dataset does not declare it): one targeted catalog query, run before every
erasure. Every message names the table and column.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Enum, MetaData, String, Table, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import NoSuchTableError, SAWarning

from .dataset import Dataset, Reference, Strategy, TableSpec

__all__ = ["MIN_HASH_LENGTH", "foreign_key_problems", "missing_columns", "reflect",
           "schema_problems", "table_problems"]

#: a pseudonym shorter than this (64 bits of hex) collides too easily
MIN_HASH_LENGTH = 16


def reflect(conn: Connection, dataset: Dataset) -> tuple[dict[str, Table], list[str]]:
    """The configured tables that exist, and a problem for each that does not."""
    meta, tables, problems = MetaData(), {}, []
    with _sqlite_expression_indexes(conn):
        for name in dataset.tables:
            try:
                tables[name] = Table(name, meta, autoload_with=conn, resolve_fks=False)
            except NoSuchTableError:
                problems.append(f"table {name}: does not exist in the database")
    return tables, problems


@contextmanager
def _sqlite_expression_indexes(conn: Connection) -> Iterator[None]:
    """SQLAlchemy skips SQLite's expression indexes with a warning; we ask
    SQLite's planner about them instead (see :mod:`.lookup`), so that one
    warning is expected here, and only here."""
    if conn.dialect.name != "sqlite":
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=SAWarning,
                                message="Skipped unsupported reflection of expression-based")
        yield


def schema_problems(conn: Connection, dataset: Dataset, tables: dict[str, Table]) -> list[str]:
    """Every mismatch between the dataset and the database (tables must be
    those :func:`reflect` found)."""
    return table_problems(dataset, tables) + foreign_key_problems(conn, dataset, tables)


def table_problems(dataset: Dataset, tables: Mapping[str, Table]) -> list[str]:
    """The mismatches the table definitions show (no query)."""
    problems: list[str] = []
    for name, table in tables.items():
        spec = dataset.tables[name]
        problems += _missing_columns(spec, table)
        for column, strategy in spec.masked.items():
            if column in table.c:
                problems += _strategy_problems(spec, table, column, strategy)
    for ref in dataset.references:
        problems += _reference_problems(dataset, tables, ref)
    return problems


def missing_columns(dataset: Dataset, tables: Mapping[str, Table]) -> list[str]:
    """Columns the dataset names that the tables do not have (what find needs)."""
    problems: list[str] = []
    for name, table in tables.items():
        problems += _missing_columns(dataset.tables[name], table)
    for ref in dataset.references:
        parent = tables.get(ref.parent)
        if parent is not None and ref.parent_column not in parent.c:
            problems.append(f"{ref}: {ref.parent}.{ref.parent_column}: no such column")
    return problems


def _missing_columns(spec: TableSpec, table: Table) -> list[str]:
    return [f"{spec.name}.{column}: no such column"
            for column in sorted(spec.used_columns) if column not in table.c]


def _strategy_problems(spec: TableSpec, table: Table, column: str,
                       strategy: Strategy) -> list[str]:
    col = table.c[column]
    where = f"{spec.name}.{column}"
    if strategy.how == "null":
        if not col.nullable:
            return [f"{where}: is NOT NULL, so it cannot be set to null "
                    "(use fixed or hash, or delete the row)"]
        return []
    if not isinstance(col.type, String) or isinstance(col.type, Enum):
        return [f"{where}: {strategy.how} needs a text column, this one is {col.type}"]
    length = getattr(col.type, "length", None)
    if strategy.how == "fixed" and length is not None and len(strategy.value or "") > length:
        return [f"{where}: the fixed value has {len(strategy.value or '')} characters, "
                f"the column holds {length}"]
    if strategy.how == "hash" and length is not None and length < MIN_HASH_LENGTH:
        return [f"{where}: holds {length} characters, too short for a pseudonym "
                f"(hash needs at least {MIN_HASH_LENGTH})"]
    return []


def _reference_problems(dataset: Dataset, tables: Mapping[str, Table],
                        ref: Reference) -> list[str]:
    parent = tables.get(ref.parent)
    if parent is None:
        return []  # reported as a missing table or a table not in the dataset
    if ref.parent_column not in parent.c:
        return [f"{ref}: {ref.parent}.{ref.parent_column}: no such column"]
    child = tables.get(ref.table)
    if ref.follow or child is None or ref.column not in child.c:
        return []
    if dataset.tables[ref.parent].changes(ref.parent_column) and not child.c[ref.column].nullable:
        return [f"{ref}: not followed, so erasure sets {ref.table}.{ref.column} to NULL "
                f"where it points at erased {ref.parent} rows, but it is NOT NULL: "
                "this reference is no exit (follow it, or make the column nullable)"]
    return []


def foreign_key_problems(conn: Connection, dataset: Dataset,
                         tables: Mapping[str, Table]) -> list[str]:
    """Real FOREIGN KEYs into rows erasure deletes or changes that the dataset
    does not declare: erasing would fail on them, or cascade outside the plan.
    One catalog query for the keys into the dataset's tables."""
    declared = {(r.table, r.column, r.parent, r.parent_column) for r in dataset.references}
    problems = []
    for table, column, parent_name, parent_column in sorted(_foreign_keys(conn, dataset,
                                                                          tables)):
        parent = dataset.tables.get(parent_name)
        if parent is None or not parent.changes(parent_column):
            continue
        if (table, column, parent.name, parent_column) in declared:
            continue
        problems.append(
            f"{table}.{column}: a FOREIGN KEY to {parent.name}.{parent_column}, whose "
            "rows erasure deletes or changes, is not declared in the dataset (add "
            f"references = {{ {column} = \"{parent.name}.{parent_column}\" }} to "
            f"table {table})")
    return problems


#: (table, column, parent, parent column) of the keys into the named tables, in
#: the parents' schema (the connection's default one)
_PG_KEYS = """
SELECT c.relname, a.attname, p.relname, pa.attname
FROM pg_catalog.pg_constraint k
JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
JOIN pg_catalog.pg_class p ON p.oid = k.confrelid
JOIN LATERAL unnest(k.conkey, k.confkey) AS u(col, pcol) ON true
JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.col
JOIN pg_catalog.pg_attribute pa ON pa.attrelid = k.confrelid AND pa.attnum = u.pcol
WHERE k.contype = 'f' AND c.relnamespace = p.relnamespace
  AND k.confrelid IN (SELECT to_regclass(quote_ident(n))
                      FROM unnest(CAST(%(names)s AS text[])) AS n)
"""
_SQLITE_KEYS = """
SELECT m.name, k."from", k."table", k."to"
FROM sqlite_master AS m, pragma_foreign_key_list(m.name) AS k WHERE m.type = 'table'
"""
_MYSQL_KEYS = """
SELECT TABLE_NAME, COLUMN_NAME, REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME
FROM information_schema.KEY_COLUMN_USAGE
WHERE TABLE_SCHEMA = DATABASE() AND REFERENCED_TABLE_SCHEMA = DATABASE()
"""


def _foreign_keys(conn: Connection, dataset: Dataset,
                  tables: Mapping[str, Table]) -> Iterable[tuple[str, str, str, str]]:
    names = list(dataset.tables)
    dialect = conn.dialect.name
    if dialect == "postgresql":
        rows: Iterable[Any] = conn.exec_driver_sql(_PG_KEYS, {"names": names})
    elif dialect == "sqlite":
        rows = conn.exec_driver_sql(_SQLITE_KEYS)
    elif dialect in ("mysql", "mariadb"):
        rows = conn.exec_driver_sql(_MYSQL_KEYS)
    else:  # any other database: what SQLAlchemy's inspector reads
        rows = [(table, column, fk["referred_table"], parent_column)
                for (_schema, table), keys in inspect(conn).get_multi_foreign_keys().items()
                for fk in keys
                for column, parent_column in zip(fk["constrained_columns"],
                                                 fk["referred_columns"], strict=False)]
    for table, column, parent, parent_column in rows:
        if parent in dataset.tables:
            yield (str(table), str(column), str(parent),
                   str(parent_column) if parent_column is not None
                   else _primary_key(tables, str(parent)))


def _primary_key(tables: Mapping[str, Table], name: str) -> str:
    """SQLite's ``REFERENCES parent`` without a column means its primary key."""
    table = tables.get(name)
    first = next(iter(table.primary_key.columns), None) if table is not None else None
    return str(first.name) if first is not None else ""
