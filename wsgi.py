"""The production entry point: ``gunicorn wsgi:app``."""

import os

os.environ.setdefault("DSAR_ENV", "production")

from dsar import create_app  # noqa: E402

app = create_app()
