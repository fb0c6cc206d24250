"""Application fixtures: the test's database, an app on it migrated, its runtime, a CLI."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner, Result
from flask import Flask
from flask.cli import ScriptInfo

from dsar import create_app, entropy, migrate
from dsar.cli import main
from dsar.database import make_engine
from dsar.runtime import Runtime
from tests.support.engine_connectors import TYPES, Script, ScriptedConnector

__all__ = ["app", "cli", "database_url", "make_app", "rt", "scripts", "seeded",
           "sqlite_app_template", "write_connectors"]

#: officers' passwords hashed at argon2's smallest cost: tests only (production's is
#: RFC 9106's 64 MiB profile, dsar.officers.factors.default_hasher)
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
#: the seed of ``seeded``
SEED = 20260302


def toml_value(value: Any) -> str:
    """A TOML literal for a str, bool, number, list or (inline) table."""
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}"
                                for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)  # strings and numbers: JSON's forms are valid TOML


def write_connectors(path: Path, tables: dict[str, dict[str, Any]]) -> Path:
    """Write a connector TOML file from ``{instance: {key: value}}``."""
    lines = []
    for name, options in tables.items():
        lines.append(f"[connectors.{name}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in options.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test's app database: a SQLite file, then a PostgreSQL database.

    Empty (a new file; ``pg_url``: a new database), unless the test builds apps
    (``make_app``, which would migrate it): then a copy of a SQLite file migrated
    once per session, or the session's PostgreSQL app database put back as the
    migration left it (``app_pg_url``). Migrating, or creating a PostgreSQL
    database, for each test took longer than most tests."""
    migrated = "make_app" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "dsar.sqlite3"
        if migrated:
            template: Path = request.getfixturevalue("sqlite_app_template")
            with closing(sqlite3.connect(template)) as source, \
                    closing(sqlite3.connect(path)) as copy:
                source.backup(copy)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("app_pg_url" if migrated else "pg_url")
    return url


@pytest.fixture(scope="session")
def sqlite_app_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite app database migrated once per session, for ``database_url`` to copy."""
    path = tmp_path_factory.mktemp("app-template") / "dsar.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return path


@pytest.fixture
def make_app(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build apps on this test's database (migrated); closed at the end."""
    made: list[Flask] = []

    def factory(connectors: dict[str, dict[str, Any]] | None = None, **config: Any) -> Flask:
        settings: dict[str, Any] = {
            "DATABASE_URL": database_url, "SECRET_KEY": SECRET,
            "EXPORT_DIR": str(tmp_path / "exports"), "TASK_RETRY_SECONDS": 0.05,
            "TASK_LEASE_SECONDS": 30.0, "CONNECTORS": None,
            # the housekeeper's scheduled full check of the chain appends an event when
            # the test did not choose: tests of the schedule set it (test_audit_checks.py)
            "AUDIT_FULL_CHECK_HOURS": 0,
        }
        if connectors is not None:
            settings["CONNECTORS"] = str(write_connectors(tmp_path / "connectors.toml",
                                                          connectors))
        settings.update(config)
        app = create_app(settings, connector_types=TYPES)
        app.extensions["dsar"].password_hasher = CHEAP_HASHER
        app.instance_path = str(tmp_path / "instance")
        if not made:
            migrate.upgrade(app.extensions["dsar"].engine)
        made.append(app)
        return app

    yield factory
    for app in made:
        app.extensions["dsar"].close()


@pytest.fixture
def seeded(monkeypatch: pytest.MonkeyPatch) -> random.Random:
    """Test-only: dsar's ids, status tokens, codes, Message-IDs and run ids
    (:mod:`dsar.entropy`) drawn from ``random.Random(SEED)`` for this test, so
    the same steps give the same values; put back to the system's CSPRNG
    afterwards. Draws from several threads at once come in any order: tests
    that need the values pinned draw from one thread at a time."""
    generator = random.Random(SEED)  # noqa: S311 - the point: repeatable, test-only
    monkeypatch.setattr(entropy, "source", generator)
    return generator


@pytest.fixture
def scripts() -> Iterator[dict[str, Script]]:
    """Named scripts for ScriptedConnector instances (``script = "<name>"``)."""
    ScriptedConnector.SCRIPTS.clear()
    yield ScriptedConnector.SCRIPTS
    for script in ScriptedConnector.SCRIPTS.values():
        if script.gate is not None:
            script.gate.set()
    ScriptedConnector.SCRIPTS.clear()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def rt(app: Flask) -> Runtime:
    return app.extensions["dsar"]  # type: ignore[no-any-return]


@pytest.fixture
def cli(app: Flask) -> Callable[..., Result]:
    """Invoke ``dsar ...`` against ``app``; returns click's Result."""

    def invoke(*args: str, app_: Flask | None = None) -> Result:
        info = ScriptInfo(create_app=lambda: app_ or app)
        return CliRunner().invoke(main, list(args), obj=info, catch_exceptions=False)

    return invoke
