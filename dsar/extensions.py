"""The Flask extensions, created unbound and attached in ``create_app``."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, current_app, request
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


def email_key() -> str:
    """Rate-limit key of the email address in the submitted form or JSON
    (as a keyed digest: counters never hold addresses)."""
    from .runtime import runtime

    data = request.form if request.form else (request.get_json(silent=True) or {})
    email = data.get("email") if isinstance(data, dict) or hasattr(data, "get") else None
    if not isinstance(email, str) or not email.strip():
        return "email:none"
    return "email:" + runtime().crypto.identifier_digest("email", email)[:32]


def request_key() -> str:
    """Rate-limit key of the request named in the URL."""
    return "request:" + str((request.view_args or {}).get("request_id", "none"))[:64]


def configured_limit(name: str) -> Callable[[], str]:
    """A limit read from the app's settings at request time (``RATE_LIMIT_<NAME>``)."""
    return lambda: str(current_app.config[f"RATE_LIMIT_{name}"])
