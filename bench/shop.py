"""The shop workload in PostgreSQL: our own generator, loaded with COPY.

The same schema and values as the leader's kit (``../shared/fides-bench/gen_data.py``)
so that both are measured on the same rows: ``customer`` (id, unique email,
name, address, phone), ``orders`` (3 per customer), ``order_items`` (5 per
customer), ``messages`` keyed by ``customer_email`` (4 per customer), plain
indexes on the lookup columns. Customer ``i`` is ``user%08d@example.com``
(lower case, as stored).

Rows are written in chunks through ``COPY ... FROM STDIN (FREEZE)`` into
tables created in the same transaction (no later vacuum pass rewrites them);
the indexes and foreign keys are built after the load. Progress is printed per chunk, and the
load gives up (:class:`GenerationTimeout`) past its deadline.

``python -m bench.shop --customers 100000`` loads a database alone.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

DDL = """
CREATE TABLE customer (
  id bigint PRIMARY KEY, email text, name text, address text, phone text,
  created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE orders (
  id bigint PRIMARY KEY, customer_id bigint NOT NULL,
  total numeric(10,2), shipping_address text,
  created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE order_items (
  id bigint PRIMARY KEY, order_id bigint NOT NULL,
  product text, qty int, price numeric(10,2));
CREATE TABLE messages (
  id bigint PRIMARY KEY, customer_email text, subject text, body text,
  sent_at timestamptz NOT NULL DEFAULT now());
"""
# Added after the load: one validating join each instead of a trigger per row.
INDEXES = (
    "ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customer(id)",
    "ALTER TABLE order_items ADD FOREIGN KEY (order_id) REFERENCES orders(id)",
    "CREATE UNIQUE INDEX customer_email_idx ON customer (email)",
    "CREATE INDEX orders_customer_id_idx ON orders (customer_id)",
    "CREATE INDEX order_items_order_id_idx ON order_items (order_id)",
    "CREATE INDEX messages_customer_email_idx ON messages (customer_email)",
)
CHUNK = 100_000
LOREM = "lorem ipsum " * 8


class GenerationTimeout(RuntimeError):
    """The load took longer than its deadline."""


def email(i: int) -> str:
    """Customer ``i``'s address (1-based), as the kit writes it."""
    return f"user{i:08d}@example.com"


def _stamps(start: datetime, step: timedelta) -> list[str]:
    """The kit's ``timestamptz 'start' + (g % 1000) * interval 'step'``, by g % 1000."""
    return [(start + k * step).strftime("%Y-%m-%d %H:%M:%S+00") for k in range(1000)]


CUSTOMER_AT = _stamps(datetime(2020, 1, 1, tzinfo=UTC), timedelta(days=1))
ORDER_AT = _stamps(datetime(2021, 1, 1, tzinfo=UTC), timedelta(hours=1))
MESSAGE_AT = _stamps(datetime(2022, 1, 1, tzinfo=UTC), timedelta(minutes=1))


def _customers(lo: int, hi: int, n: int) -> Iterator[str]:
    for g in range(lo, hi):
        yield (f"{g}\t{email(g)}\tCustomer {g}\t{g} Example Street, Springfield\t"
               f"+1-555-{g % 10_000_000:07d}\t{CUSTOMER_AT[g % 1000]}\n")


def _orders(lo: int, hi: int, n: int) -> Iterator[str]:
    for g in range(lo, hi):
        c = (g - 1) % n + 1
        cents = (g * 7919) % 100_000
        yield (f"{g}\t{c}\t{cents // 100}.{cents % 100:02d}\t{c} Example Street, Springfield\t"
               f"{ORDER_AT[g % 1000]}\n")


def _items(lo: int, hi: int, n: int) -> Iterator[str]:
    for g in range(lo, hi):
        cents = (g * 104_729) % 10_000
        yield (f"{g}\t{(g - 1) % (3 * n) + 1}\tSKU-{g % 5000}\t{1 + g % 4}\t"
               f"{cents // 100}.{cents % 100:02d}\n")


def _messages(lo: int, hi: int, n: int) -> Iterator[str]:
    for g in range(lo, hi):
        yield (f"{g}\t{email((g - 1) % n + 1)}\tSubject {g}\t{LOREM}{g}\t"
               f"{MESSAGE_AT[g % 1000]}\n")


# table, columns, rows per customer, row writer
TABLES: tuple[tuple[str, str, int, Callable[[int, int, int], Iterator[str]]], ...] = (
    ("customer", "id, email, name, address, phone, created_at", 1, _customers),
    ("orders", "id, customer_id, total, shipping_address, created_at", 3, _orders),
    ("order_items", "id, order_id, product, qty, price", 5, _items),
    ("messages", "id, customer_email, subject, body, sent_at", 4, _messages),
)


def create(admin_dsn: str, db: str, customers: int, *, max_seconds: float = 900.0,
           say: Callable[[str], None] = print) -> float:
    """(Re)create database ``db`` with ``customers`` customers; seconds taken.

    ``admin_dsn`` is a libpq connection string without ``dbname``. Raises
    :class:`GenerationTimeout` past ``max_seconds`` (the half-built database
    is dropped).
    """
    started = time.monotonic()
    deadline = started + max_seconds
    _recreate(admin_dsn, db)
    try:
        with psycopg.connect(f"{admin_dsn} dbname={db}") as conn:
            conn.execute(DDL)  # same transaction as COPY: FREEZE is allowed
            for table, columns, per, rows in TABLES:
                _copy(conn, table, columns, per * customers, customers, rows, deadline, say)
            conn.commit()
            step = time.monotonic()
            for statement in INDEXES:
                _check(deadline, "indexes")
                conn.execute(statement)
            conn.commit()
            say(f"  indexes and foreign keys in {time.monotonic() - step:.1f} s")
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
            size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))"
                                ).fetchone()
    except GenerationTimeout:
        _drop(admin_dsn, db)
        raise
    took = time.monotonic() - started
    say(f"  {db}: {customers:,} customers, {13 * customers:,} rows in {took:.1f} s "
        f"({size[0] if size else '?'})")
    return took


def _copy(conn: psycopg.Connection, table: str, columns: str, total: int, n: int,
          rows: Callable[[int, int, int], Iterator[str]], deadline: float,
          say: Callable[[str], None]) -> None:
    started = time.monotonic()
    statement = f"COPY {table} ({columns}) FROM STDIN (FREEZE)"
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for lo in range(1, total + 1, CHUNK):
            _check(deadline, table)
            hi = min(lo + CHUNK, total + 1)
            copy.write("".join(rows(lo, hi, n)))
            if total > 4 * CHUNK and (hi - 1) % (10 * CHUNK) == 0:
                say(f"  {table}: {hi - 1:,}/{total:,} rows ({time.monotonic() - started:.0f} s)")
    say(f"  {table}: {total:,} rows in {time.monotonic() - started:.1f} s")


def _check(deadline: float, where: str) -> None:
    if time.monotonic() > deadline:
        raise GenerationTimeout(f"generating the shop took too long (at {where}); "
                                "raise DSAR_BENCH_GEN_SECONDS")


def _recreate(admin_dsn: str, db: str) -> None:
    _drop(admin_dsn, db)
    with psycopg.connect(f"{admin_dsn} dbname=postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))


def _drop(admin_dsn: str, db: str) -> None:
    with psycopg.connect(f"{admin_dsn} dbname=postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(db)))


def connector_toml(url: str, name: str = "shop") -> str:
    """The sql connector over the shop, erasing what the leader's policy erases:
    every personal column set to NULL (its ``null_rewrite`` of ``user.*``).
    The generator writes addresses lower-case and trimmed, so the identity
    columns are declared normalised: their plain indexes serve the lookups."""
    return f"""[connectors.{name}]
type = "sql"
url = "{url}"

[[connectors.{name}.tables]]
name = "customer"
identity = {{ email = {{ column = "email", normalised = true }} }}
erase = "mask"
columns = {{ email = "null", name = "null", address = "null", phone = "null" }}

[[connectors.{name}.tables]]
name = "orders"
category = "orders"
references = {{ customer_id = "customer.id" }}
erase = "mask"
columns = {{ total = "null", shipping_address = "null" }}

[[connectors.{name}.tables]]
name = "order_items"
category = "orders"
references = {{ order_id = "orders.id" }}
erase = "mask"
columns = {{ product = "null", qty = "null", price = "null" }}

[[connectors.{name}.tables]]
name = "messages"
category = "messages"
identity = {{ email = {{ column = "customer_email", normalised = true }} }}
erase = "mask"
columns = {{ customer_email = "null", subject = "null", body = "null" }}
"""


def counts(dsn: str) -> dict[str, int]:
    """Rows per table (a check that the load is whole)."""
    with psycopg.connect(dsn) as conn:
        return {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(  # type: ignore[index]
            sql.Identifier(t))).fetchone()[0] for t, *_ in TABLES}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Load the shop workload into PostgreSQL.")
    parser.add_argument("--dsn", default="host=127.0.0.1 port=5432 user=postgres")
    parser.add_argument("--db", default="shop_bench")
    parser.add_argument("--customers", type=int, default=10_000)
    args = parser.parse_args()
    create(args.dsn, args.db, args.customers)
