"""Counting the statements a SQLAlchemy engine sends, split into catalog
statements (reading table definitions, indexes, constraints) and the rest.

``with counting(engine) as seen: ...`` then ``seen.catalog`` and ``seen.data``
are the statements' texts, in order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

__all__ = ["CATALOG", "Statements", "counting"]

#: what a statement reading the database's own catalog mentions
CATALOG = re.compile(
    r"pg_catalog|information_schema|pg_class|pg_attribute|pg_index|pg_constraint"
    r"|pg_namespace|sqlite_master|sqlite_schema|sqlite_temp_master|\bPRAGMA\b|pragma_"
    r"|^\s*SHOW\s|^\s*DESCRIBE\s", re.I)


@dataclass
class Statements:
    catalog: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)

    def counts(self) -> tuple[int, int]:
        return len(self.catalog), len(self.data)


@contextmanager
def counting(engine: Engine) -> Iterator[Statements]:
    seen = Statements()

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        (seen.catalog if CATALOG.search(statement) else seen.data).append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
