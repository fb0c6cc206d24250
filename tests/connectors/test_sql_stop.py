"""The sql connector asked to stop in the middle of a call, on real PostgreSQL.

The kit (dsar/testing.py) asks before the call starts; here the stop comes
while the call runs: after the first DELETE of an erasure, after the first
record of a find. A stopped erasure rolls its one transaction back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from connectors.sql import SqlTableConnector, erasure
from dsar.connector import ErasureResult, Stopped, stop_scope
from tests.connectors.test_sql_graph import (
    ALICE,
    DATASET,
    ROWS,
    assert_no_dangling_references,
    seed,
    table_rows,
)
from tests.connectors.test_sql_graph import make as make_graph


def make(url: str) -> SqlTableConnector:
    tables = [{**t, "discover": t["name"] == "customers"} for t in DATASET["tables"]]
    return make_graph(url, tables=tables)


@pytest.fixture
def crm(pg_url: str) -> Iterator[SqlTableConnector]:
    seed(pg_url)
    connector = make(pg_url)
    yield connector
    connector.close()


def test_erase_stopped_after_a_delete_rolls_back_and_reports_nothing(
    crm: SqlTableConnector, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(erasure, "BATCH", 1)  # one row per statement: many chances to stop
    plan = crm.plan_erasure(ALICE)
    before = {t: table_rows(pg_url, t) for t in ROWS}
    stop = threading.Event()

    def stop_after_delete(conn: Any, clause: Any, *args: Any) -> None:
        if getattr(clause, "is_delete", False):
            stop.set()

    event.listen(crm.engine, "after_execute", stop_after_delete)
    with stop_scope(stop), pytest.raises(Stopped) as stopped:
        crm.erase(plan)
    event.remove(crm.engine, "after_execute", stop_after_delete)
    assert stopped.value.done == ErasureResult(), "nothing committed, nothing reported"
    assert {t: table_rows(pg_url, t) for t in ROWS} == before, "rolled back as a unit"
    result = crm.erase(plan)  # the rerun does it all
    assert (result.deleted, result.masked) == (5, 1)
    assert_no_dangling_references(pg_url)


def test_find_stopped_after_one_record(crm: SqlTableConnector) -> None:
    with stop_scope(threading.Event()) as stop:
        records = crm.find(ALICE)
        next(records)
        stop.set()
        with pytest.raises(Stopped):
            next(records)


def test_discover_stops_when_asked(crm: SqlTableConnector) -> None:
    assert crm.discover(ALICE)
    with stop_scope(threading.Event()) as stop, pytest.raises(Stopped):
        stop.set()
        crm.discover(ALICE)
