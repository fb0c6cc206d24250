"""Files on disk as SECURITY.md promises: the instance, export and outbox
folders 0700 (nothing below them can be read by other local users), the
SQLite database, its WAL and shared memory 0600, the development secret 0600;
whatever the process's umask, and for folders that already existed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from dsar import create_app, migrate
from dsar.runtime import Runtime
from dsar.workflow import requests as flow


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The worst case: a process that creates everything readable by all."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_a_development_instance_keeps_its_files_to_its_owner(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_umask: None) -> None:
    instance = tmp_path / "instance"
    monkeypatch.setenv("DSAR_INSTANCE_PATH", str(instance))
    rt: Runtime = create_app({"CONNECTORS": None}).extensions["dsar"]
    try:
        migrate.upgrade(rt.engine)
        with rt.transaction() as session:
            flow.submit(session, rt, "access", {"email": ["someone@example.org"]})
        with rt.engine.connect():  # the WAL and its shared memory exist while connected
            found = {path.name: mode(path) for path in instance.iterdir()}
            assert found == {"dsar.db": 0o600, "dsar.db-wal": 0o600, "dsar.db-shm": 0o600,
                             "secret_key": 0o600, "exports": 0o700, "outbox": 0o700}
        assert mode(instance) == 0o700
    finally:
        rt.close()


def test_folders_that_existed_open_are_closed_at_start(tmp_path: Path) -> None:
    exports, outbox = tmp_path / "exports", tmp_path / "outbox"
    for folder in (exports, outbox):
        folder.mkdir(mode=0o755)
        folder.chmod(0o755)
    app = create_app({"CONNECTORS": None, "SECRET_KEY": "s" * 40,
                      "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
                      "EXPORT_DIR": str(exports), "OUTBOX_DIR": str(outbox)})
    app.extensions["dsar"].close()
    assert (mode(exports), mode(outbox)) == (0o700, 0o700)


def test_the_outbox_folder_is_not_made_when_mail_goes_over_smtp(tmp_path: Path) -> None:
    app = create_app({"CONNECTORS": None, "SECRET_KEY": "s" * 40,
                      "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
                      "EXPORT_DIR": str(tmp_path / "exports"),
                      "OUTBOX_DIR": str(tmp_path / "outbox"),
                      "SMTP_URL": "smtp://127.0.0.1:2525?starttls=off"})
    app.extensions["dsar"].close()
    assert mode(tmp_path / "exports") == 0o700
    assert not (tmp_path / "outbox").exists()
