"""Carrying out an erasure plan in one transaction, in foreign-key order.

Order inside the transaction:

1. exits: for each unfollowed reference into rows that are deleted (or whose
   referenced column is masked), set the child column to NULL where it points
   at them;
2. tables children first (the walk order reversed): delete the planned rows or
   mask their columns. Before a parent row is deleted (or its referenced column
   changed) the children found through followed references must be gone or
   nulled; if a new child appeared since the plan was made the erasure stops
   with :class:`RetryableError` (the engine plans again), so no reference is
   ever left dangling, with or without FOREIGN KEY constraints in the schema.

Everything works on the plan's keys in batches: nothing is walked again, and
running a plan twice changes nothing the second time (hashes come from the
plan, computed once from the original values).

Asked to stop (:func:`dsar.connector.check_stop`, before every batch), it raises
``Stopped(done=ErasureResult())``: the caller's transaction is rolled back, so
nothing was changed. (Committing table by table would report progress, but then
a child row added since the plan would leave the children erased and the parents
not, where today the whole erasure is refused untouched.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Table, bindparam, select
from sqlalchemy.engine import Connection

from dsar.connector import (
    Action,
    ErasurePlan,
    ErasureResult,
    PermanentError,
    RetryableError,
    check_stop,
)

from .dataset import Dataset, TableSpec
from .query import key_value

__all__ = ["BATCH", "carry_out"]

BATCH = 500
#: what a stopped erasure reports: its transaction is rolled back
NOTHING = ErasureResult()


def carry_out(conn: Connection, dataset: Dataset, tables: dict[str, Table],
              plan: ErasurePlan) -> tuple[int, int]:
    """Delete and mask what ``plan`` says, inside ``conn``'s transaction.
    Returns (deleted, masked) row counts."""
    keys = _keys_by_table(dataset, plan)
    check_stop(done=NOTHING)
    pseudonyms: dict[str, dict[str, dict[str, str]]] = plan.extra.get("pseudonyms", {})
    for ref in dataset.exits():
        parent = dataset.tables[ref.parent]
        if parent.changes(ref.parent_column):
            for batch in _batches(keys[ref.parent][Action.DELETE] + keys[ref.parent][Action.MASK]):
                check_stop(done=NOTHING)
                values = _parent_values(conn, tables, parent, ref.parent_column, batch)
                if values:
                    child = tables[ref.table]
                    conn.execute(child.update().where(child.c[ref.column].in_(values))
                                 .values({ref.column: None}))
    deleted = masked = 0
    for name in reversed(dataset.walk_order()):
        spec, table = dataset.tables[name], tables[name]
        for batch in _batches(keys[name][Action.DELETE]):
            check_stop(done=NOTHING)
            _guard_children(conn, dataset, tables, spec, batch)
            where = table.c[spec.key].in_([key_value(table.c[spec.key], k) for k in batch])
            deleted += conn.execute(table.delete().where(where)).rowcount
        if not spec.masked:
            continue
        for action in (Action.MASK, Action.KEEP):  # a hold may keep a row yet mask columns
            for batch in _batches(keys[name][action]):
                check_stop(done=NOTHING)
                _guard_children(conn, dataset, tables, spec, batch, masked_only=True)
                count = _mask(conn, spec, table, batch, pseudonyms.get(name, {}))
                masked += count if action is Action.MASK else 0
    return deleted, masked


def _keys_by_table(dataset: Dataset, plan: ErasurePlan) -> dict[str, dict[Action, list[str]]]:
    keys: dict[str, dict[Action, list[str]]] = {
        name: {action: [] for action in Action} for name in dataset.tables
    }
    for item in plan.items:
        spec = dataset.tables.get(item.collection)
        if spec is None:
            raise PermanentError(f"the plan names table {item.collection!r}, which is not "
                                 "in the dataset: plan the erasure again")
        if item.action is not spec.row_action:
            raise PermanentError(f"the plan's {item.action.value} for table {spec.name} no "
                                 "longer matches the dataset: plan the erasure again")
        keys[spec.name][item.action].append(item.key)
    return keys


def _batches(keys: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(keys), BATCH):
        yield keys[start : start + BATCH]


def _parent_values(conn: Connection, tables: dict[str, Table], parent: TableSpec,
                   column: str, batch: list[str]) -> list[Any]:
    """Values of ``parent.column`` on the batch's rows (at most one batch)."""
    table = tables[parent.name]
    key_col = table.c[parent.key]
    query = select(table.c[column]).where(
        key_col.in_([key_value(key_col, k) for k in batch]), table.c[column].is_not(None))
    return [row[0] for row in conn.execute(query)]


def _guard_children(conn: Connection, dataset: Dataset, tables: dict[str, Table],
                    spec: TableSpec, batch: list[str], masked_only: bool = False) -> None:
    """Refuse to delete (or re-key) parent rows that a child row still references."""
    for ref in dataset.followed():
        if ref.parent != spec.name or ref.table == spec.name:
            continue
        if masked_only and ref.parent_column not in spec.masked:
            continue
        values = _parent_values(conn, tables, spec, ref.parent_column, batch)
        if not values:
            continue
        child = tables[ref.table]
        found = conn.execute(select(child.c[ref.column])
                             .where(child.c[ref.column].in_(values)).limit(1)).first()
        if found is not None:
            raise RetryableError(
                f"rows of {ref.table} added since the plan was made reference {spec.name} "
                "rows being erased; nothing was changed, plan the erasure again")


def _mask(conn: Connection, spec: TableSpec, table: Table, batch: list[str],
          pseudonyms: dict[str, dict[str, str]]) -> int:
    """Apply the table's column strategies to the batch's rows."""
    key_col = table.c[spec.key]
    fixed = {c: (None if s.how == "null" else s.value)
             for c, s in spec.masked.items() if s.how != "hash"}
    hashed = [c for c, s in spec.masked.items() if s.how == "hash"]
    if not hashed:
        where = key_col.in_([key_value(key_col, k) for k in batch])
        return int(conn.execute(table.update().where(where).values(fixed)).rowcount)
    # one pseudonym per row: an executemany of UPDATE ... WHERE key = :k
    statement = table.update().where(key_col == bindparam("_key")).values(
        {**fixed, **{c: bindparam(f"_h_{i}") for i, c in enumerate(hashed)}})
    params = [
        {"_key": key_value(key_col, k),
         **{f"_h_{i}": pseudonyms.get(k, {}).get(c) for i, c in enumerate(hashed)}}
        for k in batch
    ]
    return int(conn.execute(statement, params).rowcount)
