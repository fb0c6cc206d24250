"""When a task that failed for a passing reason (a store down, a timeout)
runs again, and when it stops trying.

Retries back off exponentially from ``TASK_RETRY_SECONDS`` with jitter (so
tasks waiting on one store do not all knock at once) up to
``TASK_RETRY_MAX_DELAY_SECONDS``, for ``TASK_RETRY_WINDOW_HOURS`` from the
first failure of the run, and never later than ``TASK_RETRY_DUE_MARGIN_DAYS``
before the request's due date, so an officer still has time to act.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from ..models import Task
from ..runtime import Runtime


def backoff(attempts: int, first: float, cap: float) -> float:
    """Seconds to wait after ``attempts`` failed tries: ``first`` doubled per
    try up to ``cap``, then between half and all of it (jitter, so the tries
    waiting on one server do not all knock at once). Tasks and mail use it."""
    full = min(first * 2.0 ** min(max(attempts - 1, 0), 40), cap)
    return full * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret


def delay_seconds(rt: Runtime, attempts: int) -> float:
    """The wait after the ``attempts``-th failed attempt, jitter included."""
    return backoff(attempts, float(rt.settings["TASK_RETRY_SECONDS"]),
                   float(rt.settings["TASK_RETRY_MAX_DELAY_SECONDS"]))


def give_up_at(rt: Runtime, since: datetime, due_at: datetime) -> datetime:
    """The last moment a retry may be scheduled for."""
    window = timedelta(hours=float(rt.settings["TASK_RETRY_WINDOW_HOURS"]))
    margin = timedelta(days=float(rt.settings["TASK_RETRY_DUE_MARGIN_DAYS"]))
    return min(since + window, due_at - margin)


def next_try(rt: Runtime, task: Task, due_at: datetime, now: datetime) -> datetime | None:
    """When ``task`` runs again after a retryable failure; ``None``: give up."""
    at = now + timedelta(seconds=delay_seconds(rt, task.attempts))
    return at if at <= give_up_at(rt, task.retrying_since or now, due_at) else None
