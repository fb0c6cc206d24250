"""The task state machine: one transition table, one function to move.

A task is one step (:class:`Step`) of a request on one store. Its status moves
only through :func:`move`, which checks the table and records an audit event
for the moves that change an outcome: succeeded, failed, a retry scheduled,
cancelled. Claims and hand-backs are not outcomes (the lease and the
``attempts``/``reclaims`` counters say who held it): claiming never takes the
audit lock, and the outcome's event carries the counts.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from .. import audit
from ..crypto import Crypto
from ..models import Task


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Step(enum.StrEnum):
    DISCOVER = "discover"
    EXPORT = "export"
    ERASE = "erase"
    #: an access request's last step: its export bundle (:mod:`.export_step`)
    BUNDLE = "bundle"


T = TaskStatus
#: the moves a task may make; the comments say who makes them
TASK_TRANSITIONS: Mapping[TaskStatus, frozenset[TaskStatus]] = {
    # claimed by a worker; cancelled with its request
    T.PENDING: frozenset({T.RUNNING, T.CANCELLED}),
    # recorded; retry scheduled, released or handed back; taken over after its
    # lease ran out (a reclaim); cancelled with its request
    T.RUNNING: frozenset({T.SUCCEEDED, T.FAILED, T.PENDING, T.RUNNING, T.CANCELLED}),
    # run again: the subject grew after it ran (discovery), or an officer's retry
    # of a request whose bundle found its part incomplete
    T.SUCCEEDED: frozenset({T.PENDING}),
    # an officer's retry
    T.FAILED: frozenset({T.PENDING}),
    T.CANCELLED: frozenset(),
}
#: statuses in which a task may still run
OPEN: frozenset[TaskStatus] = frozenset({T.PENDING, T.RUNNING})
#: statuses in which it has ended, for its request's purposes
ENDED: frozenset[TaskStatus] = frozenset({T.SUCCEEDED, T.FAILED})


class IllegalTaskMove(Exception):
    """The task cannot move from its status to the one asked for."""

    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"a task that is {current} cannot become {target}")
        self.current, self.target = current, target


def can_move(current: TaskStatus | str, target: TaskStatus | str) -> bool:
    return TaskStatus(target) in TASK_TRANSITIONS[TaskStatus(current)]


def move(session: Session, crypto: Crypto, task: Task, target: TaskStatus, *,
         actor: str = "system", retry: bool = False,
         details: Mapping[str, Any] | None = None) -> str | None:
    """Move ``task`` to ``target`` in the caller's transaction; returns the
    audit action recorded (``None`` for a move that is not an outcome).

    ``retry``: a running task goes back to pending with a retry scheduled
    (``task.retry_scheduled``), as opposed to a release or a hand-back.
    Raises :class:`IllegalTaskMove` (changing nothing) when the table forbids it.
    """
    current = TaskStatus(task.status)
    if not can_move(current, target):
        raise IllegalTaskMove(current.value, target.value)
    task.status = target.value
    action = _outcome(current, target, retry)
    if action is not None:
        audit.record(session, crypto, action, actor=actor, request_id=task.request_id,
                     details={"task": task.id, "step": task.step, "connector": task.connector,
                              "attempt": task.attempts, **(details or {})})
    return action


def _outcome(current: TaskStatus, target: TaskStatus, retry: bool) -> str | None:
    if target in (T.SUCCEEDED, T.FAILED, T.CANCELLED):
        return f"task.{target.value}"
    if retry and current is T.RUNNING and target is T.PENDING:
        return "task.retry_scheduled"
    return None
