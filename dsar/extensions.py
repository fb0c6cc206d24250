"""The Flask extensions, created unbound and attached in ``create_app``."""

from __future__ import annotations

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)


def init_extensions(app: Flask) -> None:
    """Bind CSRF protection and the rate limiter to ``app``.

    Limits come from settings (``RATE_LIMIT_*``); counters live at
    ``RATELIMIT_STORAGE_URI`` (memory by default, Redis to share them).
    """
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config["RATELIMIT_STORAGE_URI"])
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    csrf.init_app(app)
    limiter.init_app(app)


def client_address() -> str:
    """The client's address for rate limits (behind a proxy, configure
    ProxyFix so this is the real client)."""
    return request.remote_addr or "unknown"
