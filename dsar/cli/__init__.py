"""The ``dsar`` command: database, requests, officers, connectors, audit, run, demo.

Commands live in one module per group and register on :data:`main` when
imported here.
"""

from . import audit, officers, requests, serve, stores  # noqa: F401  (register the commands)
from .base import main

__all__ = ["main"]
