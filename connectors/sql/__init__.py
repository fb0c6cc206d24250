"""``sql``: a person's rows in a declarative dataset of tables, in any database
SQLAlchemy reaches (tested on PostgreSQL, MariaDB/MySQL and SQLite).

Configuration (one ``[connectors.<name>]`` table in the connector file)::

    type = "sql"
    url = "postgresql+psycopg://crm@db/crm"     # secret: may hold a password
    hash_key = "..."                            # secret: needed by "hash" columns
    [connectors.crm.holds]
    tax-records = "invoices are kept 10 years (tax law)"
    [[connectors.crm.tables]]
    name = "customers"
    identity = { email = "email", phone = "phone" }
    erase = "mask"                              # delete | mask | keep
    columns = { email = "hash", phone = "null", name = { fixed = "erased" } }
    [[connectors.crm.tables]]
    name = "orders"
    references = { customer_id = "customers.id" }
    erase = "delete"
    [[connectors.crm.tables]]
    name = "invoices"
    references = { customer_id = "customers.id" }
    erase = "keep"
    hold = "tax-records"

The walk starts at rows matching an identity column and follows references
from parent rows to the child rows that point at them. ``check()`` reports
every dataset mistake, naming the table and column; docs/connectors.md has the
full reference.

Modules: :mod:`.config` (schemas), :mod:`.dataset` (the graph and its rules),
:mod:`.database` (the dataset against the real schema), :mod:`.query` (the walk
as SQL), :mod:`.erasure` (one transaction, children first), :mod:`.connector`.
"""

from .config import KINDS, SqlConfigSchema
from .connector import SqlTableConnector
from .query import json_safe

__all__ = ["KINDS", "SqlConfigSchema", "SqlTableConnector", "json_safe"]
