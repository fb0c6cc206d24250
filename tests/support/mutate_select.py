"""The test set `make mutate` runs under mutmut: pytest plugin ``-p tests.support.mutate_select``.

Mutants live in mutmut's in-process copy of the code (./mutants/), so only tests that run
the code in the pytest process can kill one; and each mutant reruns every test that reached
the mutated function, so the set has to be fast. This plugin deselects the PostgreSQL leg of
app-database tests (the SQLite leg runs the same rules), tests that need a server of their
own (PostgreSQL, MariaDB, Redis, RabbitMQ) and a few slow tests (SLOW). Which test files run
at all (no subprocess, crash or production tests) is ``pytest_add_cli_args_test_selection``
in setup.cfg's ``[mutmut]`` section.
"""

from __future__ import annotations

import pytest

# A test using one of these needs a server beyond the SQLite file.
SERVER_FIXTURES = frozenset({
    "pg_url", "app_pg_url", "postgresql", "postgresql_noproc", "pg_server", "restartable_pg",
    "mariadb_url", "mariadb_server", "redis_db", "redis_server", "rabbitmq_server",
})
SERVER_PARAMS = frozenset({"postgresql", "mariadb"})
# Slow, and rerun for every mutant of each function they pass through (seconds on 2 cores):
# memory over a large bundle (23), a reader held open while a bundle is built (6.5), a
# Hypothesis search of CSV lines (4); other tests reach the same functions.
SLOW = frozenset({
    "tests/test_bundle.py::test_memory_stays_bounded_for_many_records",
    "tests/test_export_step.py::test_no_lock_on_the_app_database_while_the_bundle_is_built",
    "tests/test_bundle_single_pass.py::test_csv_lines_are_what_csv_writer_writes",
})


def left_out(item: pytest.Item) -> bool:
    """Whether ``item`` is in SLOW or needs a database or broker server to run."""
    if item.nodeid.split("[")[0] in SLOW:
        return True
    if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return False
    return any(isinstance(value, str) and value in SERVER_PARAMS
               for value in callspec.params.values())


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deselected = [item for item in items if left_out(item)]
    if deselected:
        items[:] = [item for item in items if not left_out(item)]
        config.hook.pytest_deselected(items=deselected)
