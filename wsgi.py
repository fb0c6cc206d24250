"""The production entry point: ``gunicorn wsgi:app``."""

import os

os.environ.setdefault("DSAR_ENV", "production")

from dsar import create_app

app = create_app()
