"""What the running application holds: settings, keys, database, connectors.

One :class:`Runtime` per app, stored in ``app.extensions["dsar"]``. Workflow
code and the executor take it explicitly, so worker threads need no Flask
application context.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from argon2 import PasswordHasher
from flask import current_app, g
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from . import clock, wakeup
from .clock import Clock
from .connector import Connector
from .crypto import Crypto
from .database import READING, make_engine
from .files import private_folder
from .mail import Mailer
from .officers.factors import default_hasher
from .registry import load_connector_file
from .texts import load_texts


class Runtime:
    def __init__(self, settings: Mapping[str, Any],
                 connector_types: Mapping[str, type[Connector]] | None = None) -> None:
        self.settings = dict(settings)
        private_folder(Path(self.settings["EXPORT_DIR"]))
        if not self.settings.get("SMTP_URL"):  # mail written as files
            private_folder(Path(self.settings["OUTBOX_DIR"]))
        self.crypto = Crypto(self.settings["SECRET_KEY"], self.settings.get("AUDIT_KEY"))
        #: the time as this runtime reads it (tests swap in a MovableClock)
        self.clock: Clock = Clock()
        #: officers' password hashing (tests swap in a cheap one)
        self.password_hasher: PasswordHasher = default_hasher()
        self.engine = make_engine(self.settings["DATABASE_URL"])
        event.listen(self.engine, "connect", self._carry_clock)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False,
                                         info={clock.KEY: self.now})
        self.mailer = Mailer(self.settings)
        self.texts = load_texts(self.settings.get("TEXTS"))
        #: called after commits that made work runnable (see :mod:`dsar.wakeup`)
        self.wake_callbacks: list[Callable[[frozenset[int], bool], None]] | None = None
        self.wake_sender = ""
        #: store -> when a success there last woke the tasks waiting for it
        self.stores_woken_at: dict[str, float] = {}
        wakeup.install(self)
        self._connector_types = dict(connector_types or {})
        self._connectors: dict[str, Connector] | None = None
        self._hold_texts: dict[str, str] = {}
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The current time (aware UTC) by this runtime's clock."""
        return self.clock.now()

    def _carry_clock(self, _dbapi_connection: Any, record: Any) -> None:
        record.info[clock.KEY] = self.now  # the models' column defaults read it

    @property
    def connectors(self) -> dict[str, Connector]:
        """The configured connector instances, loaded and validated on first
        use (so CLI commands that need none work with a broken file)."""
        with self._lock:
            if self._connectors is None:
                self._connectors, self._hold_texts = load_connector_file(
                    self.settings.get("CONNECTORS"), self._connector_types)
            return self._connectors

    @property
    def hold_texts(self) -> dict[str, str]:
        """Hold name -> what a requester reads about the records it keeps (the
        connector file's ``[holds.<name>]``), loaded with the connectors."""
        _ = self.connectors
        return self._hold_texts

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits on success and rolls back on error."""
        with self.sessionmaker() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for a long read (a walk of the audit chain, a streamed
        export), rolled back at the end: one snapshot throughout (PostgreSQL:
        REPEATABLE READ; SQLite: a deferred transaction, which in WAL mode
        reads one snapshot and takes no write lock), so writers go on and
        what commits meanwhile is not seen halfway."""
        with self.sessionmaker() as session:
            options: dict[str, object] = {READING: True}
            if self.engine.dialect.name == "postgresql":
                options["isolation_level"] = "REPEATABLE READ"
            session.connection(execution_options=options)
            try:
                yield session
            finally:
                session.rollback()

    def close(self) -> None:
        """Release the connectors' and the database's connections."""
        for connector in (self._connectors or {}).values():
            connector.close()
        self.engine.dispose()


def runtime() -> Runtime:
    """The current app's runtime."""
    return cast(Runtime, current_app.extensions["dsar"])


def request_session() -> Session:
    """The session of the current HTTP request (closed at teardown)."""
    if "dsar_session" not in g:
        g.dsar_session = runtime().sessionmaker()
    return cast(Session, g.dsar_session)


def close_request_session(_exc: BaseException | None = None) -> None:
    session = g.pop("dsar_session", None)
    if session is not None:
        session.close()
