"""SQL building blocks: identifier matching, the walk as SQL, value helpers.

The walk is expressed in SQL, not in Python: a table's rows of the subject are
those matching an identity column, or whose reference column is ``IN`` the
parent's matching rows (a sub-select, recursively). So finding never holds key
sets in memory, however many rows the subject has: the database does the join
and the rows stream out.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import hmac
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Column, Enum, String, Table, cast, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from dsar.connector import Subject, normalise_identifier

from .dataset import Dataset

__all__ = ["is_text", "json_safe", "key_value", "normalised", "pseudonym", "subject_rows"]

HASH_HEX = 64  # hex digits of SHA-256


def is_text(column: ColumnElement[Any]) -> bool:
    """A text column (not an enum): compared without a CAST."""
    return isinstance(column.type, String) and not isinstance(column.type, Enum)


def normalised(column: ColumnElement[Any], kind: str) -> ColumnElement[Any]:
    """The SQL expression of a column in :func:`normalise_identifier` form.

    A text column is used as it is (``lower(trim(email))``): an expression
    index is built on exactly this expression, and a CAST would hide it from
    the planner (SQLite). Other types are cast to text first."""
    text: ColumnElement[Any] = func.trim(column if is_text(column) else cast(column, String))
    if kind == "email":
        return func.lower(text)
    if kind == "phone":
        for char in (" ", "-", ".", "(", ")"):
            text = func.replace(text, char, "")
    return text


def subject_rows(
    dataset: Dataset, tables: Mapping[str, Table], name: str, subject: Subject,
    targets: Mapping[tuple[str, str], ColumnElement[Any]], _path: tuple[str, ...] = (),
) -> ColumnElement[bool] | None:
    """A WHERE clause selecting the subject's rows of table ``name``, or None
    when the subject cannot have any there (no identifier of a kind it uses).

    ``targets[(table, kind)]`` is what the subject's (normalised) values of a
    kind are compared with: the identity column's normalised expression, or
    the column itself when it holds normalised values (see :mod:`.lookup`).
    Each followed reference becomes ``child.col IN (SELECT parent.col FROM
    parent WHERE <the parent's clause>)``. ``_path`` stops a cycle (which
    ``check()`` reports) from recursing forever.
    """
    spec, table = dataset.tables[name], tables[name]
    conditions: list[ColumnElement[bool]] = [
        targets[(name, kind)].in_(sorted(subject.values(kind)))
        for kind in spec.identity if subject.values(kind)
    ]
    for ref in spec.references:
        if not ref.follow or ref.parent not in dataset.tables or ref.parent in _path:
            continue
        parent_rows = subject_rows(dataset, tables, ref.parent, subject, targets,
                                   (*_path, name))
        if parent_rows is None:
            continue
        target = tables[ref.parent].c[ref.parent_column]
        # correlate(None): a sub-select never binds to an outer query's table
        inner = select(target).where(parent_rows, target.is_not(None)).correlate(None)
        conditions.append(table.c[ref.column].in_(inner))
    return or_(*conditions) if conditions else None


def json_safe(value: Any) -> Any:
    """A JSON-serialisable form of a column value (datetimes as ISO 8601,
    decimals and UUIDs as strings, bytes as base64)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


def key_value(column: Column[Any], key: str) -> Any:
    """Convert a record key back to the key column's Python type."""
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return key
    return python_type(key) if python_type in (int, str) else key


def pseudonym(secret: str, value: Any, kind: str | None, length: int | None) -> str:
    """Keyed pseudonym of a value: hex HMAC-SHA256, truncated to ``length``.

    Identity columns are hashed in normalised form, so the same address gives
    the same pseudonym in every table (and every connector with the same key).
    """
    text = str(value)
    text = normalise_identifier(kind, text) if kind else text.strip()
    digest = hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[: min(length or HASH_HEX, HASH_HEX)]
