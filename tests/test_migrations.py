"""The Alembic history builds exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from dsar import migrate
from dsar.database import make_engine
from dsar.models import Base


def test_upgrade_builds_the_models_schema(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)
        migrate.upgrade(engine)  # idempotent
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        tables = set(inspect(engine).get_table_names())
        assert {"requests", "subject_identifiers", "tasks", "audit_events", "audit_heads",
                "export_bundles", "alembic_version"} <= tables
    finally:
        engine.dispose()


def test_0013_moves_the_status_tokens_and_keeps_every_row(database_url: str) -> None:
    """The status token column moves to request_tokens (the verifier's once
    verified). On SQLite the requests table is copied: the rows that refer to
    it (cascading deletes) must all stay."""
    engine = make_engine(database_url)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    try:
        migrate.upgrade(engine, "0012")
        with engine.begin() as connection:
            for request_id, verified, digest in (("a", now, "d" * 64), ("b", None, "e" * 64),
                                                 ("c", None, None)):
                connection.execute(text(
                    "INSERT INTO requests (id, kind, status, received_at, due_at, verified_at, "
                    "is_review_required, status_token_digest) VALUES (:id, 'access', "
                    "'verifying', :now, :now, :verified, false, :digest)"),
                    {"id": request_id, "now": now, "verified": verified, "digest": digest})
            connection.execute(text(
                "INSERT INTO subject_identifiers (request_id, kind, digest, value_ct, source, "
                "added_at) VALUES ('b', 'email', 'x', :ct, 'requester', :now)"),
                {"ct": b"ct", "now": now})
            connection.execute(text(
                "INSERT INTO verifications (request_id, code_digest, sent_at, expires_at, "
                "attempts, sends) VALUES ('b', 'c', :now, :now, 2, 1)"), {"now": now})
            connection.execute(text(
                "INSERT INTO export_bundles (request_id, filename, size, sha256, created_at, "
                "download_count) VALUES ('a', 'a.zip', 1, :sha, :now, 0)"),
                {"sha": "1" * 64, "now": now})
        migrate.upgrade(engine)
        with engine.connect() as connection:
            def rows(sql: str) -> list[tuple[object, ...]]:
                return [tuple(r) for r in connection.execute(text(sql))]

            assert rows("SELECT id FROM requests ORDER BY id") == [("a",), ("b",), ("c",)]
            assert rows("SELECT request_id, holder, digest FROM request_tokens "
                        "ORDER BY request_id") == [("a", "verifier", "d" * 64),
                                                   ("b", "submitter", "e" * 64)]
            assert rows("SELECT request_id FROM subject_identifiers") == [("b",)]
            assert rows("SELECT request_id, attempts, mail_attempts FROM verifications") == [
                ("b", 2, 0)]
            assert rows("SELECT request_id FROM export_bundles") == [("a",)]
    finally:
        engine.dispose()
