"""The sql connector while its PostgreSQL is down, hangs or times out, and after.

The engine retries :class:`RetryableError` and fails :class:`PermanentError` at
once; anything else counts as a connector bug. So during an outage every call
must raise RetryableError (``check`` returns ``CheckResult(False, ...)``), with
a message free of personal data and without the driver's exception chained
(its text may quote values), and the same instance must work again once the
server is back: no stale pooled connection may fail the first call after it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.sql import SqlTableConnector
from dsar.connector import ConnectorError, ErasurePlan, RetryableError
from dsar.testing import personal_values
from tests.connectors.test_sql_graph import ALICE, DATASET, seed
from tests.connectors.test_sql_graph import make as make_graph

Call = Callable[[SqlTableConnector, ErasurePlan], Any]

CALLS: dict[str, Call] = {
    "find": lambda c, _plan: list(c.find(ALICE)),
    "plan_erasure": lambda c, _plan: c.plan_erasure(ALICE),
    "erase": lambda c, plan: c.erase(plan),
    "discover": lambda c, _plan: c.discover(ALICE),
}


def make(url: str) -> SqlTableConnector:
    """The graph's connector, with discover on for customers (so it reads rows)."""
    tables = [{**t, "discover": t["name"] == "customers"} for t in DATASET["tables"]]
    return make_graph(url, tables=tables)


@pytest.fixture
def crm(restartable_pg: Any) -> Iterator[SqlTableConnector]:
    seed(restartable_pg.url)
    connector = make(restartable_pg.url)
    yield connector
    connector.close()


@pytest.fixture
def warm(crm: SqlTableConnector) -> tuple[SqlTableConnector, ErasurePlan]:
    """The connector after a normal call (its pool holds a connection), and a plan."""
    assert list(crm.find(ALICE))
    return crm, crm.plan_erasure(ALICE)


def assert_clean(error: ConnectorError, connector: SqlTableConnector) -> None:
    """Not chained to the driver's exception, and no personal data or URL in it."""
    assert error.__cause__ is None and error.__suppress_context__, "raise ... from None"
    message = str(error)
    secrets = personal_values(ALICE) | {"Alice Appleton", "alice@example.org"}
    assert not [s for s in secrets if s.lower() in message.lower()], message
    assert connector.config["url"] not in message


@pytest.mark.parametrize("call", CALLS, ids=list(CALLS))
def test_call_during_outage_is_retryable_and_works_after_restart(
    warm: tuple[SqlTableConnector, ErasurePlan], restartable_pg: Any, call: str
) -> None:
    connector, plan = warm
    restartable_pg.stop()
    with pytest.raises(RetryableError) as raised:
        CALLS[call](connector, plan)
    assert_clean(raised.value, connector)
    restartable_pg.start()
    CALLS[call](connector, plan)  # the same instance, first call after the outage


@pytest.mark.parametrize("call", CALLS, ids=list(CALLS))
def test_first_call_after_a_restart_it_did_not_see_succeeds(
    warm: tuple[SqlTableConnector, ErasurePlan], restartable_pg: Any, call: str
) -> None:
    connector, plan = warm
    restartable_pg.stop()  # its pooled connection dies with the server
    restartable_pg.start()
    CALLS[call](connector, plan)


def test_check_during_outage_says_so_and_recovers(
    warm: tuple[SqlTableConnector, ErasurePlan], restartable_pg: Any
) -> None:
    connector, _plan = warm
    restartable_pg.stop()
    result = connector.check()
    assert not result.ok and "reach" in result.message
    assert connector.config["url"] not in result.message
    restartable_pg.start()
    assert connector.check().ok


def test_find_when_the_server_dies_mid_stream_is_retryable(
    crm: SqlTableConnector, restartable_pg: Any
) -> None:
    records = crm.find(ALICE)
    next(records)
    restartable_pg.stop()
    with pytest.raises(RetryableError) as raised:
        list(records)
    assert_clean(raised.value, crm)


@pytest.mark.parametrize("call", ["find", "erase"])  # each waits out the timeout (2 s)
def test_connect_timeout_is_retryable(restartable_pg: Any, call: str) -> None:
    seed(restartable_pg.url)
    connector = make(restartable_pg.url + "?connect_timeout=2")
    plan = connector.plan_erasure(ALICE)
    connector.close()  # no pooled connection: the next call must connect
    restartable_pg.freeze()
    try:
        with pytest.raises(RetryableError) as raised:
            CALLS[call](connector, plan)
        assert_clean(raised.value, connector)
    finally:
        restartable_pg.thaw()
        connector.close()


@pytest.mark.parametrize("call", CALLS, ids=list(CALLS))
def test_statement_timeout_is_retryable(restartable_pg: Any, call: str) -> None:
    seed(restartable_pg.url)
    url = restartable_pg.url + "?options=-c%20statement_timeout%3D300"
    connector = make(url)
    plan = connector.plan_erasure(ALICE)
    locker = sa.create_engine(restartable_pg.url)
    held = threading.Event()
    try:
        with locker.begin() as conn:  # hold every table until the call gave up
            conn.execute(sa.text("LOCK TABLE customers, orders, order_items, invoices "
                                 "IN ACCESS EXCLUSIVE MODE"))
            held.set()
            with pytest.raises(RetryableError) as raised:
                CALLS[call](connector, plan)
        assert_clean(raised.value, connector)
    finally:
        connector.close()
        locker.dispose()
