"""The test set `make mutate` runs under mutmut: pytest plugin ``-p tests.support.mutate_select``.

Mutants live in mutmut's in-process copy of the code (./mutants/), so only tests that run
the code in the pytest process can kill one; and each mutant reruns every test that reached
the mutated function, so the set has to be fast. mutmut collects ``tests``; this plugin
keeps the files in FILES and every ``tests/test_mutants_*.py`` (a new one is picked up
without changing mutmut's configuration, which would void its stored results), and drops
from them the PostgreSQL leg of app-database tests (the SQLite leg runs the same rules),
tests that need a server of their own (PostgreSQL, MariaDB, Redis, RabbitMQ) and a few slow
tests (SLOW). Left out altogether: tests of processes (crashes, production, celery, demo,
scaffold, packaging), of servers (connectors, rate limits on Redis, mail over SMTP, outages)
and the web fuzz.
"""

from __future__ import annotations

import fnmatch

import pytest

FILES = frozenset({
    "tests/test_any_text.py", "tests/test_audit.py", "tests/test_audit_checks.py",
    "tests/test_audit_late_lock.py", "tests/test_audit_tamper.py", "tests/test_audit_trail.py",
    "tests/test_backoff_rules.py", "tests/test_bundle.py",
    "tests/test_bundle_single_pass.py", "tests/test_cli.py", "tests/test_crypto.py",
    "tests/test_crypto_keys.py", "tests/test_deadlines.py", "tests/test_discovery.py",
    "tests/test_download_rules.py", "tests/test_end_to_end.py", "tests/test_engine.py",
    "tests/test_erasure_rules.py", "tests/test_export_bundle_size.py",
    "tests/test_pause_extend_rules.py",
    "tests/test_export_step.py", "tests/test_lease_rules.py", "tests/test_leases.py",
    "tests/test_retries.py", "tests/test_states.py", "tests/test_task_errors.py",
    "tests/test_task_states.py", "tests/test_verification_rules.py",
    "tests/api/*.py", "tests/portal/test_download.py", "tests/portal/test_form.py",
    "tests/portal/test_limits.py", "tests/portal/test_logs.py",
    "tests/portal/test_verification.py", "tests/portal/test_owner_first.py",
    "tests/test_https.py", "tests/test_notices.py", "tests/test_golden_mail.py",
    "tests/test_golden_requester_mail.py", "tests/test_mutants_*.py",
})
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
    # two hours of resends through the portal (4); the rules test the waits themselves
    "tests/portal/test_owner_first.py::test_codes_asked_for_again_wait_longer_each_time",
})


def left_out(item: pytest.Item) -> bool:
    """Whether ``item`` is outside FILES, in SLOW or needs a database or broker server."""
    path, _, name = item.nodeid.partition("::")
    if not any(fnmatch.fnmatchcase(path, pattern) for pattern in FILES):
        return True
    if f"{path}::{name.split('[')[0]}" in SLOW:
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
