"""Shared fixtures for dsar's tests.

PostgreSQL (a running server or a throwaway one) comes from tests/support/postgres.py:
fixtures ``postgresql``, ``pg_url``, ``database_url`` and ``pg_server``. It defines
``pytest_configure``; a ``pytest_configure`` added here must call it.
"""

from tests.support.app import *  # noqa: F401,F403
from tests.support.mariadb import *  # noqa: F401,F403
from tests.support.postgres import *  # noqa: F401,F403
from tests.support.redis import *  # noqa: F401,F403
