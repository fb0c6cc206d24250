"""Dataset mistakes are reported by check(), naming the table and column, on
every dialect, and no request runs on a dataset with mistakes."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from marshmallow import ValidationError

from connectors.sql import SqlTableConnector
from dsar.connector import PermanentError
from tests.connectors.test_sql_graph import ALICE, DATASET, make, seed, sql_url  # noqa: F401

Tables = list[dict[str, Any]]


def tables_with(change: Callable[[Tables], None]) -> Tables:
    tables = copy.deepcopy(DATASET["tables"])
    change(tables)
    return tables


def by_name(tables: Tables, name: str) -> dict[str, Any]:
    return next(t for t in tables if t["name"] == name)


def _set(name: str, **values: Any) -> Callable[[Tables], None]:
    return lambda tables: by_name(tables, name).update(values)


def _cycle(tables: Tables) -> None:
    by_name(tables, "customers")["references"] = {"referred_by": "customers.id"}


def _two_table_cycle(tables: Tables) -> None:
    by_name(tables, "invoices").update(identity={}, references={"customer_id": "order_items.id"})
    by_name(tables, "order_items")["references"] = {"order_id": "orders.id",
                                                    "qty": "invoices.id"}


def _exit_not_null(tables: Tables) -> None:
    by_name(tables, "customers").update(
        erase="delete", columns={},
        references={"referred_by": {"to": "customers.id", "follow": False}})
    by_name(tables, "invoices")["references"] = {
        "customer_id": {"to": "customers.id", "follow": False}}


def _undeclared(tables: Tables) -> None:
    tables.remove(by_name(tables, "order_items"))


MISTAKES = {
    "unknown table": (lambda t: t.append({"name": "ghosts", "identity": {"email": "email"},
                                          "erase": "delete"}),
                      ["table ghosts: does not exist"]),
    "unknown identity column": (_set("customers", identity={"email": "mail", "phone": "phone"},
                                     columns={"mail": "null", "phone": "null"}),
                                ["customers.mail: no such column"]),
    "unknown strategy column": (_set("customers", columns={"email": "null", "phone": "null",
                                                           "nickname": "null"}),
                                ["customers.nickname: no such column"]),
    "unknown reference column": (_set("orders", references={"client_id": "customers.id"}),
                                 ["orders.client_id: no such column"]),
    "unknown parent column": (_set("orders", references={"customer_id": "customers.uid"}),
                              ["customers.uid: no such column"]),
    "parent not in the dataset": (_set("orders", references={"customer_id": "clients.id"}),
                                  ["orders.customer_id -> clients.id: table clients is not "
                                   "in the dataset"]),
    "self-reference cycle": (_cycle, ["reference cycle without an exit: "
                                      "customers.referred_by -> customers.id"]),
    "two-table cycle": (_two_table_cycle, ["reference cycle without an exit",
                                           "order_items.qty -> invoices.id",
                                           "invoices.customer_id -> order_items.id"]),
    "null on NOT NULL": (_set("customers", columns={"email": "null", "phone": "null",
                                                    "name": "null"}),
                         ["customers.name: is NOT NULL"]),
    "fixed too long": (_set("customers", columns={"email": "null", "phone": "null",
                                                  "name": {"fixed": "x" * 101}}),
                       ["customers.name: the fixed value has 101 characters, the column "
                        "holds 100"]),
    "hash on a short column": (_set("customers", columns={"email": "null", "phone": "null",
                                                          "postcode": "hash"}),
                               ["customers.postcode: holds 10 characters, too short for a "
                                "pseudonym"]),
    "fixed on a number": (_set("customers", columns={"email": "null", "phone": "null",
                                                     "birth_year": {"fixed": "1900"}}),
                          ["customers.birth_year: fixed needs a text column"]),
    "hash on a number": (_set("orders", erase="mask", columns={"total": "hash"}),
                         ["orders.total: hash needs a text column"]),
    "deleting a parent whose children are kept": (
        _set("customers", erase="delete", columns={},
             references={"referred_by": {"to": "customers.id", "follow": False}}),
        ["invoices.customer_id -> customers.id: customers rows are deleted but the invoices "
         "rows referencing them are kept under hold tax-records"]),
    "undeclared FOREIGN KEY": (_undeclared, ["order_items.order_id: a FOREIGN KEY to "
                                             "orders.id"]),
    "unreachable table": (
        _set("orders", references={"customer_id": {"to": "customers.id", "follow": False}}),
        ["table orders: no identity column and no followed reference"]),
    "exit on a NOT NULL column": (_exit_not_null,
                                  ["invoices.customer_id -> customers.id: not followed, so "
                                   "erasure sets invoices.customer_id to NULL", "NOT NULL"]),
    "reference column hashed": (_set("orders", erase="mask", columns={"customer_id": "hash"}),
                                ["orders.customer_id -> customers.id: orders.customer_id is a "
                                 "reference; only null keeps it valid"]),
}


@pytest.fixture
def seeded_url(sql_url: str) -> str:  # noqa: F811 - the parametrised fixture, imported
    seed(sql_url)
    return sql_url


@pytest.fixture
def connector_for(seeded_url: str) -> Iterator[Callable[[Tables], SqlTableConnector]]:
    made: list[SqlTableConnector] = []

    def build(tables: Tables) -> SqlTableConnector:
        made.append(make(seeded_url, tables=tables))
        return made[-1]

    yield build
    for connector in made:
        connector.close()


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_check_names_table_and_column(
    connector_for: Callable[[Tables], SqlTableConnector], mistake: str
) -> None:
    change, expected = MISTAKES[mistake]
    connector = connector_for(tables_with(change))
    result = connector.check()
    assert not result.ok
    for fragment in expected:
        assert fragment in result.message, result.message


@pytest.mark.parametrize("mistake", ["self-reference cycle", "null on NOT NULL",
                                     "deleting a parent whose children are kept"])
def test_no_request_runs_on_a_dataset_with_mistakes(
    connector_for: Callable[[Tables], SqlTableConnector], mistake: str
) -> None:
    change, expected = MISTAKES[mistake]
    connector = connector_for(tables_with(change))
    with pytest.raises(PermanentError, match="dsar connectors check"):
        connector.plan_erasure(ALICE)
    if mistake == "self-reference cycle":  # a wrong walk: find refuses too
        with pytest.raises(PermanentError, match="cycle"):
            list(connector.find(ALICE))
    else:
        assert list(connector.find(ALICE)), "finding (export) still works"


def test_check_lists_every_mistake_at_once(
    connector_for: Callable[[Tables], SqlTableConnector]
) -> None:
    def many(tables: Tables) -> None:
        MISTAKES["unknown table"][0](tables)
        MISTAKES["null on NOT NULL"][0](tables)
        _cycle(tables)

    message = connector_for(tables_with(many)).check().message
    assert message.startswith("3 problem(s)") or message.startswith("4 problem(s)"), message
    for name in ("unknown table", "null on NOT NULL", "self-reference cycle"):
        assert MISTAKES[name][1][0] in message


def test_exit_breaks_a_cycle(connector_for: Callable[[Tables], SqlTableConnector]) -> None:
    connector = connector_for(tables_with(_set(
        "customers", references={"referred_by": {"to": "customers.id", "follow": False}})))
    result = connector.check()
    assert result.ok, result.message


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"columns": {"email": "shred"}}, "columns"),
        ({"columns": {"phone": "null"}}, "missing: email"),
        ({"columns": {"id": "null", "email": "null", "phone": "null"}}, "key column"),
        ({"erase": "keep", "hold": "no-such-hold", "columns": {}}, "holds"),
        ({"erase": "keep", "hold": None, "columns": {}}, "hold"),
        ({"erase": "delete"}, "columns apply"),
        ({"identity": {}, "references": {}}, "identity"),
        ({"references": {"referred_by": "customers"}}, "table.column"),
        ({"columns": {"email": {"keep": "nope"}, "phone": "null"}}, "holds"),
    ],
)
def test_per_table_mistakes_fail_at_load(change: dict[str, Any], fragment: str) -> None:
    tables = tables_with(_set("customers", **change))
    with pytest.raises(ValidationError) as info:
        SqlTableConnector.load_config({**DATASET, "url": "sqlite://", "tables": tables})
    assert fragment in str(info.value.messages)


def test_hash_needs_a_key_of_16_characters() -> None:
    raw = {**DATASET, "url": "sqlite://"}
    for bad in ({k: v for k, v in raw.items() if k != "hash_key"}, {**raw, "hash_key": "short"}):
        with pytest.raises(ValidationError) as info:
            SqlTableConnector.load_config(bad)
        assert "hash_key" in info.value.messages
    schema = SqlTableConnector.config_schema()
    assert schema.fields["hash_key"].metadata == {"secret": True}
