"""The sql connector streams: bounded memory and server-side cursors, on every dialect."""

from __future__ import annotations

import decimal
import tracemalloc
from typing import Any

from sqlalchemy import event

from connectors.sql import SqlTableConnector
from dsar.connector import Subject
from tests.connectors.test_sql_graph import (  # noqa: F401 - fixtures, imported
    ALICE,
    DATASET,
    ROWS,
    WHEN,
    crm,
    make,
    seed,
    seeded,
    sql_url,
)


def test_find_streams_in_bounded_memory(sql_url: str) -> None:  # noqa: F811 - fixture
    """A subject with 20k orders takes no more memory to find than one with 2k.
    (tracemalloc sees PyMySQL's and SQLite's buffers but not libpq's: the next
    test shows PostgreSQL reads through a server-side cursor.)"""
    peaks = {}
    for count in (2_000, 20_000):
        rows = {"customers": ROWS["customers"][:1] if count == 2_000 else [
                    {**ROWS["customers"][0], "id": 2, "email": "big@example.org"}],
                "orders": [{"id": 10_000_000 * (count // 2_000) + n,
                            "customer_id": 1 if count == 2_000 else 2,
                            "placed_at": WHEN, "total": decimal.Decimal("1.00")}
                           for n in range(count)]}
        seed(sql_url, rows)
        email = "alice@example.org" if count == 2_000 else "big@example.org"
        connector = make(sql_url, tables=DATASET["tables"][:2])
        try:
            subject = Subject({"email": {email}})
            assert sum(1 for _ in connector.find(subject)) == count + 1  # warm up
            tracemalloc.start()
            try:
                found = sum(1 for _ in connector.find(subject))
                peaks[count] = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert found == count + 1
        finally:
            connector.close()
    assert peaks[20_000] < peaks[2_000] * 1.5 + 256 * 1024, peaks


def test_find_reads_through_server_side_cursors(crm: SqlTableConnector) -> None:  # noqa: F811
    cursors: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "orders" in statement:
            cursors.append(type(cursor).__name__)

    event.listen(crm.engine, "before_cursor_execute", record)
    assert len(list(crm.find(ALICE))) == 7
    backend = crm.engine.dialect.name
    expected = {"postgresql": "ServerCursor", "mysql": "SSCursor", "sqlite": "Cursor"}[backend]
    assert cursors and set(cursors) == {expected}, cursors
