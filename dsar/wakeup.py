"""Waking workers the moment work appears, in this process and in others.

:func:`install` (called for every :class:`~dsar.runtime.Runtime`) watches the
runtime's sessions: a flush that makes a task runnable (a new pending task, or
one made pending again) or that queues a mail (``session.info["dsar_mail"]``)
marks the session, and when it commits

* every callback registered with :func:`listen` in this process is called
  with the ids of the tasks that became runnable and whether mail was queued
  (the in-process executor wakes its workers or its mailer; the Celery
  executor publishes one message per task, and one to send mail);
* on PostgreSQL a ``NOTIFY dsar_work`` goes out in the same transaction, so it
  is delivered exactly when the work is visible: :class:`Listener` threads in
  other processes (``dsar worker`` beside gunicorn) wake at once.

SQLite has no notifications: workers of other processes find the work at
their next poll (``poll_seconds``, half a second by default). A missed wake-up
never loses work, it only delays it to the next poll: the rows are the truth.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, make_url
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger(__name__)

CHANNEL = "dsar_work"
_RUNNABLE = "dsar_runnable"  # session.info: ids of tasks made runnable
_MAIL = "dsar_mail"  # session.info: a mail was queued

Callback = Callable[[frozenset[int], bool], None]


def install(rt: Runtime) -> None:
    """Watch ``rt``'s sessions (idempotent)."""
    if rt.wake_callbacks is not None:
        return
    callbacks: list[Callback] = []
    rt.wake_callbacks = callbacks
    sender = uuid.uuid4().hex[:16]  # this runtime, in the notifications it sends
    rt.wake_sender = sender
    notify = rt.engine.dialect.name == "postgresql"

    def after_flush(session: Session, _context: Any) -> None:
        from .models import Task
        from .workflow.task_states import TaskStatus

        for obj in (*session.new, *session.dirty):
            if isinstance(obj, Task) and obj.status == TaskStatus.PENDING:
                session.info.setdefault(_RUNNABLE, set()).add(obj.id)

    def before_commit(session: Session) -> None:
        tasks, mail = bool(session.info.get(_RUNNABLE)), bool(session.info.get(_MAIL))
        if notify and (tasks or mail):
            session.connection().exec_driver_sql(  # the driver's own statement: the cheapest
                "SELECT pg_notify(%(channel)s, %(payload)s)",
                {"channel": CHANNEL, "payload": _payload(sender, tasks, mail)})

    def after_commit(session: Session) -> None:
        ids = session.info.pop(_RUNNABLE, None)
        mail = session.info.pop(_MAIL, False)
        if ids or mail:
            for callback in list(callbacks):
                callback(frozenset(ids or ()), bool(mail))

    def after_rollback(session: Session, _previous: Any) -> None:
        session.info.pop(_RUNNABLE, None)
        session.info.pop(_MAIL, None)

    for name, fn in (("after_flush", after_flush), ("before_commit", before_commit),
                     ("after_commit", after_commit), ("after_soft_rollback", after_rollback)):
        event.listen(rt.sessionmaker, name, fn)


def listen(rt: Runtime, callback: Callback) -> None:
    """Call ``callback(task_ids, mail)`` after each commit of this process that
    made tasks runnable (``task_ids``) or queued mail (``mail``)."""
    install(rt)
    assert rt.wake_callbacks is not None  # noqa: S101 - installed above
    rt.wake_callbacks.append(callback)


def unlisten(rt: Runtime, callback: Callback) -> None:
    if rt.wake_callbacks and callback in rt.wake_callbacks:
        rt.wake_callbacks.remove(callback)


def _payload(sender: str, tasks: bool, mail: bool) -> str:
    """``<sender>:<t><m>``: which runtime sent it (its own listener skips it:
    its callbacks have run) and what became runnable."""
    return f"{sender}:{'t' if tasks else ''}{'m' if mail else ''}"


class Listener:
    """A thread that LISTENs on PostgreSQL and calls ``wake(tasks, mail)`` on
    every notification from another process (and ``wake(True, True)`` after
    each reconnect, in case one was missed). A no-op on other databases."""

    def __init__(self, rt: Runtime, wake: Callable[[bool, bool], None]) -> None:
        self.url = rt.engine.url
        self.own = rt.wake_sender
        self.enabled = rt.engine.dialect.name == "postgresql"
        self.wake = wake
        self._stop = threading.Event()
        #: set while notifications are being listened for
        self.listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dsar-listener", daemon=True)

    def start(self) -> Listener:
        if self.enabled:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _heard(self, payload: str) -> None:
        sender, _, what = payload.partition(":")
        if sender == self.own:
            return  # this runtime's own commit: its callbacks already ran
        if not what:  # an older sender, or a hand-made NOTIFY: wake for both
            what = "tm"
        self.wake("t" in what, "m" in what)

    def _conninfo(self) -> str:
        return make_url(self.url).set(drivername="postgresql").render_as_string(
            hide_password=False)

    def _run(self) -> None:
        import psycopg

        delay = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo(), autocommit=True,
                                     connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    delay = 0.5
                    self.wake(True, True)  # anything committed while we were not listening
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._heard(note.payload)
            except Exception as exc:  # the database is away: the workers' polls go on
                self.listening.clear()
                log.warning("work notifications interrupted (%s); listening again",
                            type(exc).__name__)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
