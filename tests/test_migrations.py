"""The Alembic history builds exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

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
