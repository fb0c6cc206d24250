"""Shared fixtures for dsar's tests.

Four real servers, each a running one or a throwaway one the tests start (and stop
at the end, at exit or on SIGTERM); when none can be had the run exits with code 3
saying what to install, tests are never skipped:

* PostgreSQL, tests/support/postgres.py: ``DSAR_TEST_PG`` (``host:port`` or ``start``;
  unset: probe ``DSAR_TEST_PG_PROBE``, default 127.0.0.1:5432). Fixtures
  ``postgresql``, ``pg_url``, ``app_pg_url`` (migrated) and ``pg_server``; hooks
  ``pytest_configure`` and ``pytest_unconfigure``. For outage tests, ``restartable_pg``:
  a fresh database on a private throwaway server (session-scoped, always its own) with
  ``url``, ``port``, ``stop()`` and ``start()`` on the same port.
* MariaDB, tests/support/mariadb.py: ``DSAR_TEST_MARIADB`` (unset: probe
  ``DSAR_TEST_MARIADB_PROBE``, default 127.0.0.1:3306; password ``MYSQL_PWD``).
  Fixtures ``mariadb_url`` and ``mariadb_server``; hook ``pytest_collection_finish``.
* Redis, tests/support/redis.py: ``DSAR_TEST_REDIS`` (unset: probe
  ``DSAR_TEST_REDIS_PROBE``, default 127.0.0.1:6379; password ``REDISCLI_AUTH``,
  database ``DSAR_TEST_REDIS_DB``, default 13). Fixtures ``redis_db`` and
  ``redis_server``; hook ``pytest_collection_modifyitems``.
* RabbitMQ, tests/support/rabbitmq.py: ``DSAR_TEST_RABBITMQ`` (unset: probe
  ``DSAR_TEST_RABBITMQ_PROBE``, default 127.0.0.1:5672, guest/guest). Fixture
  ``rabbitmq_server``; hook ``pytest_runtestloop``.

What they share (free ports, ``host:port`` parsing, stale scratch dirs, the cleanup
registry, exit code 3, the one ``pytest_report_header``, re-exported by postgres.py)
is in tests/support/servers.py.

A real browser, tests/support/browser.py: Debian's Chromium driven by Playwright
(``DSAR_TEST_CHROMIUM`` names another executable) and axe-core (fetched by
``scripts/ensure-test-deps.sh browser``; ``DSAR_TEST_AXE`` names another file).
Fixtures ``chromium`` (module), ``live_server`` (session), ``serve``, ``viewport``
and ``page``; helpers ``assert_accessible``, ``tab_to`` and ``screenshot``.

App databases, tests/support/app.py: ``database_url`` (parametrised over sqlite and
postgresql; a test about one of them says so with
``@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)``), ``make_app``,
``app``, ``rt`` and ``cli``.

pytest finds hooks here by name, so each module owns different ones:
``check_unique_hooks`` fails at import if two would export different hooks under
one name. A ``pytest_configure`` (or any of the hooks above) added here must call
the module's own.
"""

from tests.support import browser, mariadb, postgres, rabbitmq, redis
from tests.support.app import *  # noqa: F403
from tests.support.browser import *  # noqa: F403
from tests.support.mariadb import *  # noqa: F403
from tests.support.postgres import *  # noqa: F403
from tests.support.rabbitmq import *  # noqa: F403
from tests.support.redis import *  # noqa: F403
from tests.support.servers import check_unique_hooks

check_unique_hooks(postgres, mariadb, redis, rabbitmq, browser)
