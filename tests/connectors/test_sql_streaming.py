"""The sql connector streams: bounded memory and server-side cursors, on every dialect."""

from __future__ import annotations

import decimal
import tracemalloc
from typing import Any

from sqlalchemy import event

from connectors.sql import SqlTableConnector
from connectors.sql.erasure import BATCH
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


def _cursors_of(connector: SqlTableConnector) -> list[str]:
    """The cursor class of each query of the orders table, as the connector runs them."""
    cursors: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT orders."):
            cursors.append(type(cursor).__name__)

    event.listen(connector.engine, "before_cursor_execute", record)
    return cursors


STREAMING = {"postgresql": "ServerCursor", "mysql": "SSCursor", "sqlite": "Cursor"}


def test_a_few_rows_come_in_one_plain_query(crm: SqlTableConnector) -> None:  # noqa: F811
    """A server-side cursor costs PostgreSQL round trips of its own: a
    subject's usual few rows are read without one."""
    cursors = _cursors_of(crm)
    assert len(list(crm.find(ALICE))) == 7
    plain = {"postgresql": "Cursor", "mysql": "Cursor", "sqlite": "Cursor"}
    assert cursors == [plain[crm.engine.dialect.name]], cursors


def test_more_rows_than_a_batch_stream_through_a_server_side_cursor(
        sql_url: str) -> None:  # noqa: F811 - fixture
    """Past ``BATCH`` rows of one table, the query runs again through a
    server-side cursor, and every row is found once."""
    orders = [{"id": 100 + n, "customer_id": 1, "placed_at": WHEN,
               "total": decimal.Decimal("1.00")} for n in range(BATCH + 1)]
    seed(sql_url, {"customers": ROWS["customers"][:1], "orders": orders})
    connector = make(sql_url, tables=DATASET["tables"][:2])
    try:
        cursors = _cursors_of(connector)
        keys = [r.key for r in connector.find(ALICE) if r.collection == "orders"]
        assert sorted(keys, key=int) == [str(o["id"]) for o in orders]
        assert cursors[-1] == STREAMING[connector.engine.dialect.name], cursors
        assert len(cursors) == 2, cursors
    finally:
        connector.close()
