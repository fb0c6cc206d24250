"""The time as dsar reads it: one clock per :class:`~dsar.runtime.Runtime`.

Every rule that depends on time (deadlines, code and link lifetimes, leases,
retries, expiry, the audit trail's timestamps, the models' defaults) reads
``rt.now()``: the system's aware UTC time, unless a test swapped in a
:class:`MovableClock` and moves it instead of sleeping. Durations measured
while work runs (a lease's heartbeat, ``TASK_MAX_SECONDS``) read
``rt.clock.monotonic()``, which moves with it.

Sessions and connections of a runtime carry its clock (``now_of(session)``,
and the column defaults through the connection), for code that has a session
but no runtime.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

#: the key under which sessions' and connections' ``info`` carry the clock
KEY = "dsar_now"


def system_now() -> datetime:
    return datetime.now(UTC)


class Clock:
    """The system clock."""

    def now(self) -> datetime:
        return system_now()

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back: for durations
        (a lease's heartbeat, a task's maximum run), not for dates."""
        return time.monotonic()


class MovableClock(Clock):
    """A clock a test moves: the system's time (or ``start``, frozen) plus
    whatever it was advanced by."""

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("naive datetime: use an aware UTC datetime")
        self._start = start
        self._offset = timedelta(0)

    def now(self) -> datetime:
        return (self._start or system_now()) + self._offset

    def monotonic(self) -> float:
        """Moves with :meth:`now`: frozen with it, advanced with it."""
        ticking = 0.0 if self._start is not None else time.monotonic()
        return ticking + self._offset.total_seconds()

    def advance(self, delta: timedelta | None = None, **parts: float) -> datetime:
        """Move on by ``delta`` (or ``timedelta(**parts)``); returns the new now."""
        self._offset += delta if delta is not None else timedelta(**parts)
        return self.now()


def now_of(session: Session) -> datetime:
    """The time by the clock of the runtime that made ``session`` (the system's
    for a session from elsewhere)."""
    reader: Callable[[], datetime] = session.info.get(KEY, system_now)
    return reader()


def column_now(context: Any) -> datetime:
    """A column default: the time by the clock of the runtime whose
    connection writes the row."""
    reader: Callable[[], datetime] = context.connection.info.get(KEY, system_now)
    return reader()
