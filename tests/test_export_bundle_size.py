"""The released bundle on the app database (SQLite and PostgreSQL): sizes past
2 GiB, and the bundle step building with the configured compression (a
setting checked at start)."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import text

from dsar import migrate
from dsar.config import ConfigError, load_settings
from dsar.database import make_engine
from dsar.models import ExportBundle
from tests.support.engine_connectors import Script
from tests.test_engine import process, status, submit, two_stores


def test_a_bundle_over_2_gib_keeps_its_size(make_app: Callable[..., Flask]) -> None:
    rt = make_app().extensions["dsar"]
    request_id = submit(rt)
    size = 5 * 2**30 + 7  # past a 32-bit integer's 2**31 - 1
    with rt.transaction() as session:
        session.add(ExportBundle(request_id=request_id, filename=f"{request_id}.zip", size=size,
                                 sha256="0" * 64, download_count=0))
    with rt.transaction() as session:
        assert session.get(ExportBundle, request_id).size == size


def test_the_bundle_step_uses_the_configured_compression(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    rt = make_app(two_stores(scripts), EXPORT_COMPRESSION="stored").extensions["dsar"]
    request_id = submit(rt)
    process(rt)
    assert status(rt, request_id) == "completed"
    with zipfile.ZipFile(Path(rt.settings["EXPORT_DIR"]) / f"{request_id}.zip") as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}


def test_the_upgrade_keeps_released_bundles(database_url: str) -> None:
    """0005 widens the column in place (SQLite: a copied table): rows stay."""
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine, "0004")
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO requests (id, kind, status, received_at, due_at, "
                "is_review_required) VALUES ('a', 'access', 'completed', :now, :now, false)"),
                {"now": datetime(2026, 12, 1, tzinfo=UTC)})
            connection.execute(text(
                "INSERT INTO export_bundles (request_id, filename, size, sha256, created_at, "
                "download_count) VALUES ('a', 'a.zip', 2147483647, :sha, :now, 1)"),
                {"sha": "1" * 64, "now": datetime(2026, 12, 1, tzinfo=UTC)})
        migrate.upgrade(engine)
        with engine.begin() as connection:
            connection.execute(text("UPDATE export_bundles SET size = size + 2"))
            row = connection.execute(text("SELECT filename, size, download_count "
                                          "FROM export_bundles")).one()
        assert tuple(row) == ("a.zip", 2**31 + 1, 1)
    finally:
        engine.dispose()


def test_the_compression_setting_is_checked_at_start(tmp_path: Path) -> None:
    environ = {"DSAR_SECRET_KEY": "s" * 40}
    assert load_settings(environ, None, str(tmp_path))["EXPORT_COMPRESSION"] == "deflate-1"
    for value in ("stored", "deflate-9"):
        chosen = load_settings({**environ, "DSAR_EXPORT_COMPRESSION": value}, None, str(tmp_path))
        assert chosen["EXPORT_COMPRESSION"] == value
    with pytest.raises(ConfigError, match="DSAR_EXPORT_COMPRESSION"):
        load_settings({**environ, "DSAR_EXPORT_COMPRESSION": "deflate-0"}, None, str(tmp_path))
