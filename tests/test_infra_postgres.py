"""The test infrastructure itself: a real PostgreSQL, one fresh database per test."""

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.smoke


def test_postgresql_fixture_answers(postgresql, pg_server):
    version = postgresql.execute("SELECT version()").fetchone()[0]
    assert version.startswith("PostgreSQL")
    assert postgresql.info.port == pg_server.port


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_gets_a_fresh_database(postgresql, run):
    # Whichever run comes second would see the first one's table if they shared a database.
    cur = postgresql.execute("SELECT to_regclass('public.isolation_marker') IS NULL")
    assert cur.fetchone()[0], "database left over from another test"
    postgresql.execute("CREATE TABLE isolation_marker (run int)")
    postgresql.execute("INSERT INTO isolation_marker VALUES (%s)", (run,))
    postgresql.commit()


def test_database_url_works_with_sqlalchemy(database_url):
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE things (id integer PRIMARY KEY, name text)"))
            conn.execute(sa.text("INSERT INTO things VALUES (1, 'one'), (2, 'two')"))
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, name FROM things ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(1, "one"), (2, "two")]
        expected = "sqlite" if database_url.startswith("sqlite") else "postgresql"
        assert engine.dialect.name == expected
    finally:
        engine.dispose()
