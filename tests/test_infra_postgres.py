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


def _select_one(url: str, connect_timeout: int = 5) -> int:
    engine = sa.create_engine(url, connect_args={"connect_timeout": connect_timeout})
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT 1")).scalar_one())
    finally:
        engine.dispose()


def test_restartable_pg_stops_and_starts_on_the_same_port(restartable_pg, pg_server):
    assert restartable_pg.port != pg_server.port  # always a private server
    assert restartable_pg.url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    assert _select_one(restartable_pg.url) == 1
    port = restartable_pg.port
    restartable_pg.stop()
    with pytest.raises(sa.exc.OperationalError):
        _select_one(restartable_pg.url)
    restartable_pg.start()
    assert restartable_pg.port == port
    assert _select_one(restartable_pg.url) == 1


def test_restartable_pg_cuts_open_connections_and_keeps_data(restartable_pg):
    engine = sa.create_engine(restartable_pg.url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE kept (id integer)"))
            conn.execute(sa.text("INSERT INTO kept VALUES (7)"))
        held = engine.connect()
        restartable_pg.stop()
        with pytest.raises(sa.exc.OperationalError):
            held.execute(sa.text("SELECT 1"))
        held.close()
        restartable_pg.start()
        engine.dispose()  # the pool's connections died with the server
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT id FROM kept")).scalar_one() == 7
    finally:
        engine.dispose()


@pytest.mark.parametrize("run", [1, 2])
def test_restartable_pg_runs_and_is_fresh_at_each_test_start(restartable_pg, run):
    # Whichever run comes first leaves the server stopped: the fixture starts it again.
    engine = sa.create_engine(restartable_pg.url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE marker (run integer)"))
    finally:
        engine.dispose()
    restartable_pg.stop()


def test_restartable_pg_frozen_makes_connecting_hang(restartable_pg):
    restartable_pg.freeze()
    with pytest.raises(sa.exc.OperationalError):
        _select_one(restartable_pg.url, connect_timeout=2)
    restartable_pg.thaw()
    assert _select_one(restartable_pg.url) == 1
    restartable_pg.freeze()  # left frozen: the next test's fixture thaws it


def test_restartable_pg_is_thawed_for_the_next_test(restartable_pg):
    assert _select_one(restartable_pg.url) == 1
