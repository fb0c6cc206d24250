"""The dataset against the real database: reflection and schema mistakes.

:func:`reflect` loads the configured tables; :func:`schema_problems` compares
the dataset with them (missing tables and columns, a strategy the column cannot
take, an unfollowed reference whose column cannot be set to NULL) and with the
database's own FOREIGN KEYs (one erasure would break or cascade through because
the dataset does not declare it). Every message names the table and column.
"""

from __future__ import annotations

from sqlalchemy import Enum, MetaData, String, Table, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import NoSuchTableError

from .dataset import Dataset, Reference, Strategy, TableSpec

__all__ = ["MIN_HASH_LENGTH", "missing_columns", "reflect", "schema_problems"]

#: a pseudonym shorter than this (64 bits of hex) collides too easily
MIN_HASH_LENGTH = 16


def reflect(conn: Connection, dataset: Dataset) -> tuple[dict[str, Table], list[str]]:
    """The configured tables that exist, and a problem for each that does not."""
    meta, tables, problems = MetaData(), {}, []
    for name in dataset.tables:
        try:
            tables[name] = Table(name, meta, autoload_with=conn, resolve_fks=False)
        except NoSuchTableError:
            problems.append(f"table {name}: does not exist in the database")
    return tables, problems


def schema_problems(conn: Connection, dataset: Dataset, tables: dict[str, Table]) -> list[str]:
    """Every mismatch between the dataset and the database (tables must be
    those :func:`reflect` found)."""
    problems: list[str] = []
    for name, table in tables.items():
        spec = dataset.tables[name]
        problems += _missing_columns(spec, table)
        for column, strategy in spec.masked.items():
            if column in table.c:
                problems += _strategy_problems(spec, table, column, strategy)
    for ref in dataset.references:
        problems += _reference_problems(dataset, tables, ref)
    problems += _undeclared_foreign_keys(conn, dataset)
    return problems


def missing_columns(dataset: Dataset, tables: dict[str, Table]) -> list[str]:
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


def _reference_problems(dataset: Dataset, tables: dict[str, Table],
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


def _undeclared_foreign_keys(conn: Connection, dataset: Dataset) -> list[str]:
    """Real FOREIGN KEYs into rows erasure deletes or changes that the dataset
    does not declare: erasing would fail on them, or cascade outside the plan."""
    declared = {(r.table, r.column, r.parent, r.parent_column) for r in dataset.references}
    problems = []
    for (_schema, table), keys in sorted(inspect(conn).get_multi_foreign_keys().items(),
                                         key=lambda item: item[0][1]):
        for fk in keys:
            parent = dataset.tables.get(fk["referred_table"])
            if parent is None:
                continue
            pairs = zip(fk["constrained_columns"], fk["referred_columns"], strict=False)
            for column, parent_column in pairs:
                if not parent.changes(parent_column):
                    continue
                if (table, column, parent.name, parent_column) in declared:
                    continue
                problems.append(
                    f"{table}.{column}: a FOREIGN KEY to {parent.name}.{parent_column}, whose "
                    "rows erasure deletes or changes, is not declared in the dataset (add "
                    f"references = {{ {column} = \"{parent.name}.{parent_column}\" }} to "
                    f"table {table})")
    return problems
