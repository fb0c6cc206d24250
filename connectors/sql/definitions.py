"""Table definitions, read once per connector instance and shared by its threads.

Reading them (reflection) costs dozens of catalog queries, more than the
lookups themselves, so :class:`DefinitionCache` keeps what was read: the
tables, the mistakes they show, and how each identity column is looked up.
The connector drops it after any database error (a schema change shows up as
one) and when it refuses a call, and reads again when it is older than
:data:`MAX_AGE` (a column added meanwhile is then exported too). Rows and
results are never kept: every find reads the data afresh.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from .database import missing_columns, reflect, table_problems
from .dataset import Dataset
from .lookup import Lookup, identity_lookups

__all__ = ["MAX_AGE", "DefinitionCache", "Definitions"]

#: seconds after which definitions are read again on the next call
MAX_AGE = 600.0


@dataclass(frozen=True)
class Definitions:
    """What one reading of the catalog says about the dataset's tables."""

    tables: dict[str, Table]
    missing: list[str]  # tables that do not exist
    find_problems: list[str]  # columns find needs that do not exist
    erase_problems: list[str]  # every mismatch but the FOREIGN KEYs (checked per erasure)
    lookups: dict[tuple[str, str], Lookup]
    #: (table, kind) -> what the subject's values of that kind are compared with
    targets: dict[tuple[str, str], ColumnElement[Any]]
    read_at: float

    @classmethod
    def read(cls, conn: Connection, dataset: Dataset, now: float = 0.0) -> Definitions:
        tables, missing = reflect(conn, dataset)
        lookups = identity_lookups(conn.dialect, dataset, tables)
        targets = {key: lookup.target(tables[lookup.table]) for key, lookup in lookups.items()}
        return cls(tables, missing, missing_columns(dataset, tables),
                   table_problems(dataset, tables), lookups, targets, now)


class DefinitionCache:
    """The current :class:`Definitions` of one connector instance, thread-safe:
    one thread reads the catalog while the others wait for its result."""

    def __init__(self, dataset: Dataset, clock: Callable[[], float] = time.monotonic) -> None:
        self._dataset = dataset
        self._clock = clock
        self._lock = threading.Lock()
        self._current: Definitions | None = None

    def get(self, conn: Connection) -> Definitions:
        """The current definitions, read on ``conn`` if there are none (or too old)."""
        current = self._current
        if current is None or self._stale(current):
            with self._lock:
                current = self._current
                if current is None or self._stale(current):
                    current = Definitions.read(conn, self._dataset, self._clock())
                    self._current = current
        return current

    def clear(self) -> None:
        self._current = None

    def _stale(self, definitions: Definitions) -> bool:
        return self._clock() - definitions.read_at > MAX_AGE
