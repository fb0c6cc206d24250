"""The sql connector against a real SQLite file database."""

from __future__ import annotations

import datetime as dt
import decimal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from marshmallow import ValidationError
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    insert,
    select,
)

from connectors.sql import SqlTableConnector, json_safe
from connectors.sql import connector as sql_connector
from dsar.connector import Action, Capability, PermanentError, RetryableError, Subject
from dsar.testing import ConnectorContract

ALICE = Subject({"email": {"alice@example.org"}, "phone": {"+44 20 7946 0958"}})
BOB = Subject({"email": {"bob@example.org"}})

TABLES: list[dict[str, Any]] = [
    {
        "name": "customers",
        "identity": {"email": "email", "phone": "phone"},
        "erase": "null",
        "null_columns": ["email", "phone", "name", "avatar"],
        "discover": True,
    },
    {
        "name": "newsletter",
        "key": "token",
        "category": "marketing",
        "identity": {"email": "address"},
        "erase": "delete",
    },
    {
        "name": "invoices",
        "category": "billing",
        "identity": {"email": "billing_email"},
        "erase": "keep",
        "hold": "tax-records",
        "reason": "invoices are kept 10 years by tax law",
    },
]


def seed(url: str) -> None:
    """Create and fill the three tables: Alice (mixed-case email, formatted
    phone), Bob, and Carol who matches nobody."""
    meta = MetaData()
    customers = Table(
        "customers",
        meta,
        Column("id", Integer, primary_key=True),
        Column("email", String(200)),
        Column("phone", String(40)),
        Column("name", String(100)),
        Column("created_at", DateTime),
        Column("balance", Numeric(10, 2)),
        Column("avatar", LargeBinary),
    )
    newsletter = Table(
        "newsletter",
        meta,
        Column("token", String(20), primary_key=True),
        Column("address", String(200)),
    )
    invoices = Table(
        "invoices",
        meta,
        Column("id", Integer, primary_key=True),
        Column("billing_email", String(200)),
        Column("amount", Numeric(10, 2)),
        Column("issued", Date),
    )
    engine = create_engine(url)
    meta.create_all(engine)
    when = dt.datetime(2024, 5, 1, 12, 30)  # noqa: DTZ001 - a store's own naive column
    with engine.begin() as conn:
        conn.execute(
            insert(customers),
            [
                {
                    "id": 1,
                    "email": " Alice@Example.ORG",
                    "phone": "+44 (20) 7946-0958",
                    "name": "Alice A",
                    "created_at": when,
                    "balance": decimal.Decimal("12.50"),
                    "avatar": b"\x89PNG",
                },
                {
                    "id": 2,
                    "email": "bob@example.org",
                    "phone": "+1 555 0100",
                    "name": "Bob B",
                    "created_at": when,
                    "balance": decimal.Decimal("0"),
                    "avatar": None,
                },
                {
                    "id": 3,
                    "email": "carol@example.org",
                    "phone": "+44 20 7946 0000",
                    "name": "Carol C",
                    "created_at": when,
                    "balance": None,
                    "avatar": None,
                },
                {
                    "id": 4,
                    "email": None,
                    "phone": "+442079460958",
                    "name": "Alice by phone",
                    "created_at": None,
                    "balance": None,
                    "avatar": None,
                },
            ],
        )
        conn.execute(
            insert(newsletter),
            [
                {"token": "n-a1", "address": "alice@example.org"},
                {"token": "n-a2", "address": "ALICE@example.org"},
                {"token": "n-b1", "address": "bob@example.org"},
            ],
        )
        conn.execute(
            insert(invoices),
            [
                {
                    "id": 10,
                    "billing_email": "alice@example.org",
                    "amount": decimal.Decimal("99.00"),
                    "issued": dt.date(2023, 1, 31),
                },
                {
                    "id": 11,
                    "billing_email": "bob@example.org",
                    "amount": decimal.Decimal("5.00"),
                    "issued": dt.date(2023, 2, 1),
                },
            ],
        )
    engine.dispose()


def make(url: str, tables: list[dict[str, Any]] | None = None) -> SqlTableConnector:
    config = SqlTableConnector.load_config({"url": url, "tables": tables or TABLES})
    return SqlTableConnector("crm", config)


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'crm.sqlite'}"
    seed(url)
    return url


@pytest.fixture
def connector(url: str) -> Iterator[SqlTableConnector]:
    conn = make(url)
    yield conn
    conn.close()


def rows(url: str, table: str) -> dict[Any, dict[str, Any]]:
    engine = create_engine(url)
    meta = MetaData()
    tbl = Table(table, meta, autoload_with=engine)
    with engine.connect() as conn:
        result = {row[0]: dict(row._mapping) for row in conn.execute(select(tbl))}
    engine.dispose()
    return result


class TestSqlContract(ConnectorContract):
    @pytest.fixture
    def subject(self) -> Subject:
        return ALICE

    @pytest.fixture
    def other_subject(self) -> Subject:
        return BOB

    @pytest.fixture
    def unreachable_connector(self, tmp_path: Path) -> Iterator[SqlTableConnector]:
        conn = make(f"sqlite:///{tmp_path / 'no-such-dir' / 'crm.sqlite'}")
        yield conn
        conn.close()


def test_find_matches_normalised_email_and_phone(connector: SqlTableConnector) -> None:
    refs = sorted(r.ref for r in connector.find(ALICE))
    assert refs == [
        ("customers", "1"),
        ("customers", "4"),
        ("invoices", "10"),
        ("newsletter", "n-a1"),
        ("newsletter", "n-a2"),
    ]


def test_record_fields_are_json_safe(connector: SqlTableConnector) -> None:
    record = next(r for r in connector.find(ALICE) if r.ref == ("customers", "1"))
    assert record.category == "profile"
    assert record.fields["created_at"] == "2024-05-01T12:30:00"
    assert record.fields["balance"] == "12.50"
    assert record.fields["avatar"] == "iVBORw=="


def test_plan_actions_and_details(connector: SqlTableConnector) -> None:
    plan = connector.plan_erasure(ALICE)
    actions = {item.ref: item for item in plan.items}
    assert actions[("newsletter", "n-a1")].action is Action.DELETE
    assert actions[("customers", "1")].action is Action.MASK
    assert "email" in actions[("customers", "1")].detail
    keep = actions[("invoices", "10")]
    assert keep.action is Action.KEEP
    assert "tax-records" in keep.detail and "tax law" in keep.detail
    assert plan.summary() == {"delete": 2, "mask": 2, "keep": 1}


def test_erase_nulls_deletes_and_keeps(connector: SqlTableConnector, url: str) -> None:
    result = connector.erase(connector.plan_erasure(ALICE))
    assert (result.deleted, result.masked, result.kept) == (2, 2, 1)
    customers = rows(url, "customers")
    assert (
        customers[1]["email"] is None
        and customers[1]["phone"] is None
        and customers[1]["name"] is None
    )
    assert customers[1]["avatar"] is None
    assert customers[1]["balance"] == decimal.Decimal("12.50"), "columns not listed stay"
    assert customers[2]["email"] == "bob@example.org"
    assert set(rows(url, "newsletter")) == {"n-b1"}
    assert rows(url, "invoices")[10]["billing_email"] == "alice@example.org"
    left = list(connector.find(ALICE))
    assert [r.ref for r in left] == [("invoices", "10")]


def test_erase_is_one_transaction(connector: SqlTableConnector, url: str) -> None:
    plan = connector.plan_erasure(ALICE)
    plan.items.append(type(plan.items[0])("nowhere", "1", Action.DELETE))
    with pytest.raises(PermanentError, match="not in the dataset"):
        connector.erase(plan)
    assert "n-a1" in rows(url, "newsletter"), "nothing is erased when one table fails"


def test_instance_identity_kinds_are_the_tables_kinds(url: str) -> None:
    conn = make(url, [TABLES[1]])
    assert conn.identity_kinds == {"email"}
    assert make(url).identity_kinds == {"email", "phone"}
    conn.close()


def test_check_names_missing_table_and_column(url: str) -> None:
    missing_table = make(url, [{**TABLES[1], "name": "ghosts"}])
    result = missing_table.check()
    assert not result.ok and "ghosts" in result.message
    missing_column = make(url, [{**TABLES[1], "identity": {"email": "mail"}}])
    result = missing_column.check()
    assert not result.ok and "mail" in result.message
    missing_table.close()
    missing_column.close()


def test_find_on_unreachable_database_is_retryable(tmp_path: Path) -> None:
    conn = make(f"sqlite:///{tmp_path / 'absent' / 'x.sqlite'}")
    with pytest.raises(RetryableError):
        list(conn.find(ALICE))
    conn.close()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({**TABLES[1], "erase": "shred"}, "erase"),
        ({**TABLES[0], "null_columns": ["name"]}, "null_columns"),
        ({**TABLES[0], "null_columns": ["id", "email", "phone"]}, "null_columns"),
        ({k: v for k, v in TABLES[2].items() if k != "reason"}, "hold"),
        ({**TABLES[1], "identity": {"Pass port": "address"}}, "identity"),
        ({**TABLES[1], "identity": {}}, "identity"),
    ],
)
def test_config_errors(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        SqlTableConnector.load_config({"url": "sqlite://", "tables": [table]})
    assert message in str(info.value.messages)


def test_config_rejects_duplicate_tables_and_flags_url_secret() -> None:
    with pytest.raises(ValidationError):
        SqlTableConnector.load_config({"url": "sqlite://", "tables": [TABLES[1], TABLES[1]]})
    assert SqlTableConnector.config_schema().fields["url"].metadata == {"secret": True}


def test_json_safe() -> None:
    assert json_safe(dt.date(2024, 1, 2)) == "2024-01-02"
    assert json_safe(decimal.Decimal("1.10")) == "1.10"
    assert json_safe(memoryview(b"ab")) == "YWI="
    assert json_safe(True) is True and json_safe(None) is None


def test_discover_reports_the_other_identity_columns(connector: SqlTableConnector) -> None:
    found = connector.discover(Subject({"email": {"alice@example.org"}}))
    assert any("7946" in v for v in found["phone"])  # the phone on Alice's customer row
    assert "alice@example.org" in {v.lower() for v in found["email"]}
    assert Capability.DISCOVER in connector.capabilities


def test_discover_is_off_unless_a_table_asks(tmp_path: Path) -> None:
    conn = make(f"sqlite:///{tmp_path / 'crm.sqlite'}", tables=[
        {**TABLES[0], "discover": False}])
    try:
        assert Capability.DISCOVER not in conn.capabilities
    finally:
        conn.close()


def test_worker_threads_share_one_engine(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The instance is shared by the worker threads: two first uses at once
    make one engine (one pool), not one each with the loser's never closed."""
    made: list[Any] = []
    both = threading.Barrier(2)

    def slow_create_engine(*args: Any, **kwargs: Any) -> Any:
        made.append(create_engine(*args, **kwargs))
        time.sleep(0.2)  # the other thread arrives meanwhile
        return made[-1]

    monkeypatch.setattr(sql_connector, "create_engine", slow_create_engine)
    crm = make(url)
    engines: list[Any] = []

    def first_use() -> None:
        both.wait(5)
        engines.append(crm.engine)

    threads = [threading.Thread(target=first_use) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    try:
        assert len(made) == 1 and engines == [made[0], made[0]]
    finally:
        crm.close()
        for engine in made:
            engine.dispose()
