"""The sql connector's reference graph on real SQLite, PostgreSQL and MariaDB.

customers -> orders -> order_items, and invoices (kept for tax law), with real
FOREIGN KEY constraints (SQLite with ``PRAGMA foreign_keys=ON``). Helpers here
(``SCHEMA``, ``seed``, ``DATASET``, ``make``) are shared with test_sql_check.py.
"""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import hashlib
import hmac
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    event,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Engine, make_url

from connectors.sql import SqlTableConnector
from dsar.connector import Action, RetryableError, Subject
from dsar.testing import ConnectorContract

DIALECTS = ["sqlite", "postgresql", "mariadb"]
HASH_KEY = "test-only-hash-key-0123456789abcdef"
REASON = "invoices are kept 10 years (tax law)"
ALICE = Subject({"email": {"alice@example.org"}, "phone": {"+44 20 7946 0958"}})
BOB = Subject({"email": {"bob@example.org"}})

SCHEMA = MetaData()
Table("customers", SCHEMA,
      Column("id", Integer, primary_key=True, autoincrement=False),
      Column("email", String(200)),
      Column("phone", String(40)),
      Column("name", String(100), nullable=False),
      Column("city", String(50), nullable=False),
      Column("postcode", String(10)),
      Column("birth_year", Integer),
      Column("referred_by", Integer, ForeignKey("customers.id")))
Table("orders", SCHEMA,
      Column("id", Integer, primary_key=True, autoincrement=False),
      Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
      Column("placed_at", DateTime, nullable=False),
      Column("total", Numeric(10, 2), nullable=False))
Table("order_items", SCHEMA,
      Column("id", Integer, primary_key=True, autoincrement=False),
      Column("order_id", Integer, ForeignKey("orders.id"), nullable=False),
      Column("sku", String(20), nullable=False),
      Column("qty", Integer, nullable=False))
Table("invoices", SCHEMA,
      Column("id", Integer, primary_key=True, autoincrement=False),
      Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
      Column("billing_email", String(200), nullable=False),
      Column("amount", Numeric(10, 2), nullable=False))

WHEN = dt.datetime(2024, 5, 1, 12, 30)  # noqa: DTZ001 - a store's own naive column
ROWS: dict[str, list[dict[str, Any]]] = {
    "customers": [
        {"id": 1, "email": " Alice@Example.ORG", "phone": "+44 (20) 7946-0958",
         "name": "Alice Appleton", "city": "Leeds", "postcode": "LS1 4AP", "birth_year": 1980,
         "referred_by": None},
        {"id": 2, "email": "bob@example.org", "phone": "+1 555 0100", "name": "Bob Bramble",
         "city": "Graz", "postcode": "8010", "birth_year": 1975, "referred_by": 1},
        {"id": 3, "email": "carol@example.org", "phone": None, "name": "Carol Cress",
         "city": "Lyon", "postcode": None, "birth_year": None, "referred_by": None},
    ],
    "orders": [
        {"id": 10, "customer_id": 1, "placed_at": WHEN, "total": decimal.Decimal("19.90")},
        {"id": 11, "customer_id": 1, "placed_at": WHEN, "total": decimal.Decimal("5.00")},
        {"id": 12, "customer_id": 2, "placed_at": WHEN, "total": decimal.Decimal("7.25")},
        {"id": 13, "customer_id": 3, "placed_at": WHEN, "total": decimal.Decimal("1.00")},
    ],
    "order_items": [
        {"id": 100, "order_id": 10, "sku": "LAMP-01", "qty": 1},
        {"id": 101, "order_id": 10, "sku": "SHADE-02", "qty": 2},
        {"id": 102, "order_id": 11, "sku": "CANDLE-03", "qty": 5},
        {"id": 103, "order_id": 12, "sku": "LAMP-01", "qty": 1},
    ],
    "invoices": [
        {"id": 1000, "customer_id": 1, "billing_email": "alice@example.org",
         "amount": decimal.Decimal("24.90")},
        {"id": 1001, "customer_id": 2, "billing_email": "bob@example.org",
         "amount": decimal.Decimal("7.25")},
    ],
}

DATASET: dict[str, Any] = {
    "hash_key": HASH_KEY,
    "holds": {"tax-records": REASON},
    "tables": [
        {"name": "customers", "identity": {"email": "email", "phone": "phone"},
         "erase": "mask",
         "columns": {"email": "hash", "phone": "null", "name": {"fixed": "erased"}}},
        {"name": "orders", "category": "orders", "references": {"customer_id": "customers.id"},
         "erase": "delete"},
        {"name": "order_items", "category": "orders",
         "references": {"order_id": "orders.id"}, "erase": "delete"},
        {"name": "invoices", "category": "billing", "identity": {"email": "billing_email"},
         "references": {"customer_id": "customers.id"}, "erase": "keep", "hold": "tax-records"},
    ],
}


def engine_for(url: str) -> Engine:
    """An engine that enforces FOREIGN KEYs on SQLite too."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect",
                     lambda dbapi, _rec: dbapi.execute("PRAGMA foreign_keys=ON"))
    return engine


def seed(url: str, rows: dict[str, list[dict[str, Any]]] | None = None) -> None:
    engine = engine_for(url)
    try:
        SCHEMA.create_all(engine)
        with engine.begin() as conn:
            for table in SCHEMA.sorted_tables:  # parents first
                if (rows or ROWS).get(table.name):
                    conn.execute(insert(table), (rows or ROWS)[table.name])
    finally:
        engine.dispose()


def make(url: str, **changes: Any) -> SqlTableConnector:
    raw = {**copy.deepcopy(DATASET), "url": url, **changes}
    return SqlTableConnector("crm", SqlTableConnector.load_config(raw))


def table_rows(url: str, table: str) -> dict[int, dict[str, Any]]:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            found = conn.execute(select(SCHEMA.tables[table]).order_by(text("id")))
            return {row.id: dict(row._mapping) for row in found}
    finally:
        engine.dispose()


@pytest.fixture(params=DIALECTS)
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each dialect, for real."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'crm.sqlite'}"
    name = "pg_url" if request.param == "postgresql" else "mariadb_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def seeded(sql_url: str) -> str:
    seed(sql_url)
    return sql_url


@pytest.fixture
def crm(seeded: str) -> Iterator[SqlTableConnector]:
    connector = make(seeded)
    yield connector
    connector.close()


class TestSqlGraphContract(ConnectorContract):
    @pytest.fixture
    def connector(self, crm: SqlTableConnector) -> SqlTableConnector:
        return crm

    @pytest.fixture
    def subject(self) -> Subject:
        return ALICE

    @pytest.fixture
    def other_subject(self) -> Subject:
        return BOB

    @pytest.fixture
    def unreachable_connector(self, sql_url: str, tmp_path: Path) -> Iterator[SqlTableConnector]:
        url = {  # nothing listens on port 1: refused at once
            "sqlite": f"sqlite:///{tmp_path / 'no-such-dir' / 'crm.sqlite'}",
            "postgresql": "postgresql+psycopg://postgres@127.0.0.1:1/none",
            "mysql": "mysql+pymysql://root@127.0.0.1:1/none",
        }[make_url(sql_url).get_backend_name()]
        connector = make(url)
        yield connector
        connector.close()


def expected_hash(value: str, length: int = 64) -> str:
    return hmac.new(HASH_KEY.encode(), value.encode(), hashlib.sha256).hexdigest()[:length]


def test_walk_finds_three_levels_and_the_kept_invoice(crm: SqlTableConnector) -> None:
    refs = sorted(r.ref for r in crm.find(ALICE))
    assert refs == [("customers", "1"), ("invoices", "1000"), ("order_items", "100"),
                    ("order_items", "101"), ("order_items", "102"), ("orders", "10"),
                    ("orders", "11")]
    assert crm.check().ok, crm.check().message


def test_plan_says_how_each_row_goes(crm: SqlTableConnector) -> None:
    plan = crm.plan_erasure(ALICE)
    items = {item.ref: item for item in plan.items}
    customer = items[("customers", "1")]
    assert customer.action is Action.MASK
    assert "email replaced by a keyed hash" in customer.detail
    assert "phone set to NULL" in customer.detail and "'erased'" in customer.detail
    assert {items[r].action for r in items if r[0] in ("orders", "order_items")} == {Action.DELETE}
    invoice = items[("invoices", "1000")]
    assert invoice.action is Action.KEEP and invoice.detail == f"hold tax-records: {REASON}"
    assert invoice.holds == ("tax-records",)  # named for the requester's notice
    assert {items[r].holds for r in items if r != ("invoices", "1000")} == {()}
    assert plan.summary() == {"delete": 5, "mask": 1, "keep": 1}
    # the pseudonym is computed once, in the plan, from the normalised address
    assert plan.extra["pseudonyms"] == {"customers": {"1": {"email": expected_hash(
        "alice@example.org")}}}


def test_erase_graph_with_mixed_strategies_and_hold(crm: SqlTableConnector, seeded: str) -> None:
    before = {t: table_rows(seeded, t) for t in ROWS}
    plan = crm.plan_erasure(ALICE)
    result = crm.erase(plan)
    assert (result.deleted, result.masked, result.kept) == (5, 1, 1)

    customers = table_rows(seeded, "customers")
    alice = customers[1]
    assert alice["email"] == expected_hash("alice@example.org")
    assert alice["phone"] is None and alice["name"] == "erased"
    assert (alice["city"], alice["postcode"]) == ("Leeds", "LS1 4AP"), "unlisted columns stay"
    assert customers[2] == before["customers"][2] and customers[3] == before["customers"][3]
    assert set(table_rows(seeded, "orders")) == {12, 13}
    assert set(table_rows(seeded, "order_items")) == {103}
    assert table_rows(seeded, "invoices") == before["invoices"], "the hold keeps invoices"
    assert_no_dangling_references(seeded)

    left = list(crm.find(ALICE))
    assert [r.ref for r in left] == [("invoices", "1000")]
    assert {item.detail for item in plan.items if item.ref in plan.kept()} == {
        f"hold tax-records: {REASON}"}

    again = crm.erase(plan)  # idempotent: the same pseudonym, nothing more deleted
    assert (again.deleted, again.kept) == (0, 1)
    assert table_rows(seeded, "customers") == customers


def assert_no_dangling_references(url: str) -> None:
    engine = engine_for(url)
    checks = {
        "orders": "SELECT COUNT(*) FROM orders o LEFT JOIN customers c ON c.id = o.customer_id "
                  "WHERE c.id IS NULL",
        "order_items": "SELECT COUNT(*) FROM order_items i LEFT JOIN orders o "
                       "ON o.id = i.order_id WHERE o.id IS NULL",
        "invoices": "SELECT COUNT(*) FROM invoices i LEFT JOIN customers c "
                    "ON c.id = i.customer_id WHERE c.id IS NULL",
    }
    try:
        with engine.connect() as conn:
            dangling = {name: conn.execute(text(sql)).scalar() for name, sql in checks.items()}
    finally:
        engine.dispose()
    assert dangling == dict.fromkeys(checks, 0)


def test_other_customers_graph_untouched(crm: SqlTableConnector, seeded: str) -> None:
    bob_before = sorted((r.ref, dict(r.fields)) for r in crm.find(BOB))
    crm.erase(crm.plan_erasure(ALICE))
    assert sorted((r.ref, dict(r.fields)) for r in crm.find(BOB)) == bob_before
    assert [r.ref for r in crm.find(Subject({"email": {"carol@example.org"}}))] == [
        ("customers", "3"), ("orders", "13")]


def test_parent_delete_takes_children_along(seeded: str) -> None:
    """Deleting the customer row deletes orders and items first (children before
    parents, FOREIGN KEYs enforced); invoices then can only be deleted too."""
    tables = copy.deepcopy(DATASET["tables"])
    # the real FOREIGN KEY customers.referred_by must be declared, or check() refuses:
    # not followed (a referral is not the subject's data), so erasure nulls it
    tables[0] = {**tables[0], "erase": "delete", "columns": {},
                 "references": {"referred_by": {"to": "customers.id", "follow": False}}}
    tables[3] = {**tables[3], "erase": "delete", "hold": None}
    connector = make(seeded, tables=tables)
    try:
        assert connector.check().ok, connector.check().message
        result = connector.erase(connector.plan_erasure(ALICE))
        assert (result.deleted, result.masked, result.kept) == (7, 0, 0)
        assert list(connector.find(ALICE)) == []
        assert set(table_rows(seeded, "customers")) == {2, 3}
        assert_no_dangling_references(seeded)
        assert table_rows(seeded, "customers")[2]["referred_by"] is None  # was Alice
        plan = connector.plan_erasure(ALICE)
        assert plan.items == []
    finally:
        connector.close()


def test_column_kept_under_hold_keeps_the_row_and_masks_the_rest(seeded: str) -> None:
    tables = copy.deepcopy(DATASET["tables"])
    tables[0]["columns"] = {"email": {"keep": "tax-records"}, "phone": "null",
                            "name": {"fixed": "erased"}}
    connector = make(seeded, tables=tables)
    try:
        assert connector.check().ok, connector.check().message
        plan = connector.plan_erasure(ALICE)
        item = next(i for i in plan.items if i.ref == ("customers", "1"))
        assert item.action is Action.KEEP
        assert item.detail == (f"hold tax-records: {REASON}; masked: phone set to NULL, "
                               "name replaced by 'erased'")
        assert item.holds == ("tax-records",)
        result = connector.erase(plan)
        assert (result.deleted, result.masked, result.kept) == (5, 0, 2)
        alice = table_rows(seeded, "customers")[1]
        assert (alice["email"], alice["phone"], alice["name"]) == (
            " Alice@Example.ORG", None, "erased")
        assert sorted(r.ref for r in connector.find(ALICE)) == [
            ("customers", "1"), ("invoices", "1000")]
    finally:
        connector.close()


def test_a_row_kept_under_two_holds_names_both(seeded: str) -> None:
    """The table's hold first, then the holds its kept identity columns name."""
    tables = copy.deepcopy(DATASET["tables"])
    tables[3]["columns"] = {"billing_email": {"keep": "litigation"}}
    connector = make(seeded, tables=tables,
                     holds={"tax-records": REASON, "litigation": "a court case is open"})
    try:
        assert connector.check().ok, connector.check().message
        invoice = next(i for i in connector.plan_erasure(ALICE).items
                       if i.ref == ("invoices", "1000"))
        assert invoice.holds == ("tax-records", "litigation")
        assert invoice.detail == (f"hold tax-records: {REASON}; "
                                  "hold litigation: a court case is open")
    finally:
        connector.close()


def test_the_documented_example_loads() -> None:
    """The TOML example of docs/connectors.md's sql section is a valid config."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "connectors.md").read_text("utf-8")
    section = docs[docs.index("## sql: your own database"):]
    example = re.search(r"```toml\n(.*?)```", section, re.S)
    assert example is not None
    raw = tomllib.loads(example.group(1))["connectors"]["crm"]
    assert raw.pop("type") == "sql"
    config = SqlTableConnector.load_config(raw)
    connector = SqlTableConnector("crm", config)
    assert connector.dataset.walk_problems() == [] and connector.dataset.erase_problems() == []
    assert connector.dataset.walk_order() == ["customers", "orders", "invoices", "order_items"]


def test_new_child_since_the_plan_stops_erasure_untouched(
    crm: SqlTableConnector, seeded: str
) -> None:
    """A row added after planning would dangle: the whole transaction is rolled
    back and the error is retryable (the engine plans again)."""
    plan = crm.plan_erasure(ALICE)
    engine = engine_for(seeded)
    with engine.begin() as conn:
        conn.execute(insert(SCHEMA.tables["order_items"]),
                     [{"id": 104, "order_id": 10, "sku": "LATE-04", "qty": 1}])
    engine.dispose()
    before = {t: table_rows(seeded, t) for t in ROWS}
    with pytest.raises(RetryableError, match="plan the erasure again"):
        crm.erase(plan)
    assert {t: table_rows(seeded, t) for t in ROWS} == before, "nothing changed"
    result = crm.erase(crm.plan_erasure(ALICE))  # planned again: it goes through
    assert result.deleted == 6
    assert_no_dangling_references(seeded)
