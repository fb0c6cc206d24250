"""How the sql connector looks rows up, on real SQLite, PostgreSQL and MariaDB:
table definitions read once per instance (not per call), lookups an index can
serve, ``check()`` warning about lookups that read the whole table (with the
statement that fixes it), and columns declared to hold normalised values.

Matching stays normalised: a stored `` Alice@Example.ORG`` is found by
``alice@example.org`` unless its column is declared (and proven) normalised.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from connectors.sql import SqlTableConnector, definitions
from dsar.connector import PermanentError, Subject
from tests.connectors.test_sql_graph import (  # noqa: F401 - fixtures, imported
    ALICE,
    DATASET,
    crm,
    engine_for,
    make,
    seed,
    seeded,
    sql_url,
    table_rows,
)
from tests.support.statements import counting

ALICE_BY_EMAIL = Subject({"email": {"alice@example.org"}})


def execute(url: str, *statements: str) -> None:
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def fixes(message: str) -> list[str]:
    """The statements check() prints after "fix: ", one per warning."""
    return re.findall(r"fix: (.+)$", message, re.M)


def backend(url: str) -> str:
    return make_url(url).get_backend_name()


def declared(**columns: bool) -> list[dict[str, Any]]:
    """The graph's dataset with customers' identity columns declared normalised."""
    tables = copy.deepcopy(DATASET["tables"])
    tables[0]["identity"] = {kind: {"column": column, "normalised": columns.get(column, False)}
                             for kind, column in tables[0]["identity"].items()}
    return tables


# ------------------------------------------------ table definitions, read once
def test_definitions_are_read_once_per_instance(crm: SqlTableConnector) -> None:  # noqa: F811
    """After the first call, find reads no catalog; plan and erase read it once
    each, with one targeted query (foreign keys into the rows erasure changes);
    the verifying find after the erasure is a real find again."""
    assert len(list(crm.find(ALICE))) == 7
    with counting(crm.engine) as found:
        assert len(list(crm.find(ALICE))) == 7
    with counting(crm.engine) as planned:
        plan = crm.plan_erasure(ALICE)
    with counting(crm.engine) as erased:
        crm.erase(plan)
    with counting(crm.engine) as verified:
        assert [r.ref for r in crm.find(ALICE)] == [("invoices", "1000")]
    assert found.counts() == (0, 4), found.catalog
    assert planned.counts() == (1, 4), planned.catalog
    assert len(erased.catalog) == 1, erased.catalog
    assert verified.counts() == (0, 4), verified.catalog


def test_definitions_are_read_once_by_concurrent_threads(seeded: str) -> None:  # noqa: F811
    cold = make(seeded)
    with counting(cold.engine) as one:
        list(cold.find(ALICE))
    cold.close()
    shared = make(seeded)
    start, results = threading.Barrier(6), []

    def work() -> None:
        start.wait()
        results.append(sorted(r.ref for r in shared.find(ALICE)))

    threads = [threading.Thread(target=work) for _ in range(6)]
    try:
        with counting(shared.engine) as many:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        shared.close()
    assert len(results) == 6 and all(r == results[0] for r in results)
    assert len(many.catalog) == len(one.catalog), "the definitions were read once"


def test_a_column_gone_since_the_first_call_is_named(seeded: str) -> None:  # noqa: F811
    """A schema error reads the definitions again, once: a column the dataset
    does not use may go; the dataset's mistake is named as when they were read
    on every call; fixed, it works again."""
    connector = make(seeded)
    try:
        assert list(connector.find(ALICE))
        execute(seeded, "ALTER TABLE customers DROP COLUMN postcode")  # not in the dataset
        records = {r.ref: r for r in connector.find(ALICE)}
        assert len(records) == 7 and "postcode" not in records[("customers", "1")].fields
        execute(seeded, "ALTER TABLE customers RENAME COLUMN phone TO telephone")
        with pytest.raises(PermanentError, match="customers.phone: no such column"):
            list(connector.find(ALICE))
        execute(seeded, "ALTER TABLE customers RENAME COLUMN telephone TO phone")
        assert len(list(connector.find(ALICE))) == 7
    finally:
        connector.close()


def test_definitions_older_than_max_age_are_read_again(
    crm: SqlTableConnector, seeded: str, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """A column added since the definitions were read is exported once they
    are older than MAX_AGE (the clock is the cache's input)."""
    now = [1000.0]
    monkeypatch.setattr(crm, "_definitions", definitions.DefinitionCache(
        crm.dataset, clock=lambda: now[0]))
    assert list(crm.find(ALICE))
    execute(seeded, "ALTER TABLE customers ADD COLUMN nickname VARCHAR(20)")
    now[0] += definitions.MAX_AGE + 1
    with counting(crm.engine) as seen:
        record = next(r for r in crm.find(ALICE) if r.ref == ("customers", "1"))
    assert "nickname" in record.fields and seen.catalog


def test_an_undeclared_foreign_key_since_the_plan_stops_the_erasure(
    crm: SqlTableConnector, seeded: str  # noqa: F811
) -> None:
    plan = crm.plan_erasure(ALICE)
    execute(seeded, "CREATE TABLE notes (id INTEGER PRIMARY KEY, order_id INTEGER "
                    "REFERENCES orders (id))")
    before = table_rows(seeded, "orders")
    with pytest.raises(PermanentError, match="notes.order_id: a FOREIGN KEY to orders.id"):
        crm.erase(plan)
    assert table_rows(seeded, "orders") == before, "nothing changed"


# ------------------------------------------------------ check(): the warnings
def test_check_warns_per_lookup_and_its_fix_silences_it(
    crm: SqlTableConnector, seeded: str  # noqa: F811
) -> None:
    """Each identity and reference column without an index serving its lookup
    is named, with the statement for this database; running the statements
    leaves no warning, and matching is unchanged."""
    result = crm.check()
    assert result.ok, result.message
    identity = ["customers.email", "customers.phone", "invoices.billing_email"]
    # MariaDB (InnoDB) indexes every FOREIGN KEY column itself
    references = [] if backend(seeded) == "mysql" else [
        "orders.customer_id", "order_items.order_id", "invoices.customer_id"]
    warned = re.findall(r"^\s+(\S+): every lookup reads the whole table", result.message, re.M)
    assert sorted(warned) == sorted(identity + references), result.message
    statements = fixes(result.message)
    assert len(statements) == len(warned)
    if backend(seeded) == "mysql":
        assert all(s.startswith("ALTER TABLE") and " ADD INDEX " in s for s in statements)
    else:
        assert "CREATE INDEX ix_customers_email_norm ON customers (lower(trim(email)))" in (
            statements)
    execute(seeded, *statements)
    again = crm.check()
    assert again.ok and "warning" not in again.message, again.message
    fresh = make(seeded)  # reads the definitions with the new indexes (and columns)
    try:
        with counting(fresh.engine) as seen:
            assert len(list(fresh.find(ALICE))) == 7, "' Alice@Example.ORG' is still found"
    finally:
        fresh.close()
    if backend(seeded) == "mysql":  # the lookup goes through the indexed generated column
        assert any("customers.email_norm IN" in s for s in seen.data), seen.data


def test_check_on_sqlite_reads_expression_indexes_without_warnings(
    tmp_path: Any,
) -> None:
    """SQLAlchemy warns (an error in this suite) when it reflects a SQLite
    expression index: the connector handles it where it reflects. The lookup
    is the index's expression exactly, so SQLite uses it."""
    url = f"sqlite:///{tmp_path / 'crm.sqlite'}"
    seed(url)
    execute(url, "CREATE INDEX ix_customers_email_norm ON customers (lower(trim(email)))")
    connector = make(url)
    try:
        assert connector.check().ok
        assert "customers.email:" not in connector.check().message
        statements = find_statements(connector, ALICE_BY_EMAIL)
    finally:
        connector.close()
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            plan = [row[-1] for statement, parameters in statements
                    for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                                    parameters)]
    finally:
        engine.dispose()
    assert "SEARCH customers USING INDEX ix_customers_email_norm (<expr>=?)" in plan, plan
    assert not [step for step in plan if step.startswith("SCAN customers")], plan


# ---------------------------------------------- columns declared normalised
def test_declared_normalised_column_is_compared_as_it_is(seeded: str) -> None:  # noqa: F811
    execute(seeded, "UPDATE customers SET email = 'alice@example.org' WHERE id = 1",
            "UPDATE customers SET phone = '+442079460958' WHERE id = 1",
            "UPDATE customers SET phone = '+15550100' WHERE id = 2")
    connector = make(seeded, tables=declared(email=True, phone=True))
    try:
        assert connector.check().ok, connector.check().message
        with counting(connector.engine) as seen:
            refs = sorted(r.ref for r in connector.find(ALICE))
        assert ("customers", "1") in refs and len(refs) == 7
        customers = next(s for s in seen.data if "FROM customers" in s and "orders" not in s)
        assert "lower(" not in customers and "trim(" not in customers, customers
        warnings = connector.check().message
        assert "CREATE INDEX ix_customers_email ON customers (email)" in fixes(warnings), warnings
    finally:
        connector.close()


@pytest.mark.parametrize("column", ["email", "phone"])
def test_check_refuses_a_column_declared_normalised_that_is_not(
    seeded: str, column: str  # noqa: F811
) -> None:
    """Alice's row holds ' Alice@Example.ORG' and '+44 (20) 7946-0958'."""
    connector = make(seeded, tables=declared(**{column: True}))
    try:
        result = connector.check()
        assert not result.ok
        assert f"customers.{column}: declared normalised, but" in result.message, result.message
        assert "Alice" not in result.message and "7946" not in result.message
    finally:
        connector.close()


def test_undeclared_columns_keep_normalised_matching(seeded: str) -> None:  # noqa: F811
    execute(seeded, "UPDATE invoices SET billing_email = '  ALICE@example.ORG ' WHERE id = 1000")
    connector = make(seeded, tables=declared(email=False))
    try:
        refs = sorted(r.ref for r in connector.find(ALICE_BY_EMAIL))
        assert ("customers", "1") in refs and ("invoices", "1000") in refs
        assert len(refs) == 7
    finally:
        connector.close()


def test_declaring_normalised_loads_again_unchanged() -> None:
    raw = {**copy.deepcopy(DATASET), "url": "sqlite://", "tables": declared(email=True)}
    config = SqlTableConnector.load_config(raw)
    assert SqlTableConnector.load_config(config) == config
    assert SqlTableConnector("crm", config).dataset.tables["customers"].normalised == {"email"}


# ------------------------------------------------- PostgreSQL: the plan's scans
@pytest.fixture
def big_pg(pg_url: str) -> Iterator[str]:
    """The graph on PostgreSQL with 20,000 more customers (so that the planner
    prefers an index where one serves), statistics up to date."""
    seed(pg_url)
    execute(pg_url, "INSERT INTO customers (id, email, phone, name, city) SELECT g, "
                    "'user' || g || '@example.org', '+1555' || g, 'n', 'c' "
                    "FROM generate_series(10, 20010) g")
    yield pg_url


def scans(url: str, statements: list[tuple[str, Any]]) -> list[str]:
    """The plan nodes of each statement: (node type, relation)."""
    engine = engine_for(url)
    found: list[str] = []
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            for statement, parameters in statements:
                plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement,
                                            parameters).scalar()
                found += _nodes(plan[0]["Plan"])
    finally:
        engine.dispose()
    return found


def _nodes(node: dict[str, Any]) -> list[str]:
    here = [f"{node['Node Type']} on {node.get('Relation Name')}"]
    for child in node.get("Plans", []):
        here += _nodes(child)
    return here


def find_statements(connector: SqlTableConnector, subject: Subject) -> list[tuple[str, Any]]:
    captured: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    event.listen(connector.engine, "before_cursor_execute", record)
    try:
        assert list(connector.find(subject))
    finally:
        event.remove(connector.engine, "before_cursor_execute", record)
    return [(s, p) for s, p in captured if "customers" in s]


def test_postgresql_expression_index_serves_the_lookup(big_pg: str) -> None:
    execute(big_pg, "CREATE INDEX ix_customers_email_norm ON customers (lower(trim(email)))",
            "CREATE INDEX ix_invoices_billing_email_norm ON invoices "
            "(lower(trim(billing_email)))")
    connector = make(big_pg)
    try:
        nodes = scans(big_pg, find_statements(connector, ALICE_BY_EMAIL))
    finally:
        connector.close()
    assert "Seq Scan on customers" not in nodes, nodes
    assert any(n.endswith("on customers") and "Index" in n for n in nodes), nodes


def test_postgresql_plain_index_serves_a_declared_normalised_column(big_pg: str) -> None:
    execute(big_pg, "UPDATE customers SET email = 'alice@example.org' WHERE id = 1",
            "CREATE INDEX ix_customers_email ON customers (email)")
    connector = make(big_pg, tables=declared(email=True))
    try:
        nodes = scans(big_pg, find_statements(connector, ALICE_BY_EMAIL))
    finally:
        connector.close()
    assert "Seq Scan on customers" not in nodes, nodes
    assert any(n.endswith("on customers") and "Index" in n for n in nodes), nodes
