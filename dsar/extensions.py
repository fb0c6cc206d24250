"""The Flask extensions, created unbound and attached in ``create_app``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Flask, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect
from limits.errors import ConfigurationError, StorageError
from werkzeug.exceptions import ServiceUnavailable

from .config import ConfigError

log = logging.getLogger(__name__)

#: redis client options unless the URI sets them (``?socket_timeout=...``): a Redis
#: that does not answer costs a request 2 s, not the OS's TCP timeout
REDIS_TIMEOUTS = {"socket_connect_timeout": 2.0, "socket_timeout": 2.0}


class FailClosedLimiter(Limiter):
    """A limiter whose storage cannot be reached refuses the limited request
    with 503 (logged, naming DSAR_RATELIMIT_STORAGE_URI): never unlimited."""

    def _check_request_limit(self, callable_name: str | None = None,
                             in_middleware: bool = True) -> None:
        try:
            super()._check_request_limit(callable_name, in_middleware)
        except StorageError as exc:
            log.error("rate-limit storage unreachable (DSAR_RATELIMIT_STORAGE_URI=%s): %s: "
                      "refusing %s with 503", redacted(current_app.config[
                          "RATELIMIT_STORAGE_URI"]), exc.storage_error, request.endpoint)
            raise ServiceUnavailable() from None


csrf = CSRFProtect()
limiter = FailClosedLimiter(key_func=get_remote_address, default_limits=[],
                            headers_enabled=True)


def init_extensions(app: Flask) -> None:
    """Bind CSRF protection and the rate limiter to ``app``.

    Limits come from settings (``RATE_LIMIT_*``); counters live at
    ``RATELIMIT_STORAGE_URI`` (memory by default, Redis to share them). A
    storage that cannot be built is a :class:`ConfigError`; one that cannot be
    reached fails closed at request time (:class:`FailClosedLimiter`).
    """
    uri = str(app.config["RATELIMIT_STORAGE_URI"])
    options: dict[str, object] = {"wrap_exceptions": True}  # errors as limits' StorageError
    if urlsplit(uri).scheme.lower() in ("redis", "rediss", "redis+unix"):
        options.update(REDIS_TIMEOUTS)
    app.config["RATELIMIT_STORAGE_OPTIONS"] = {
        **options, **app.config.get("RATELIMIT_STORAGE_OPTIONS", {})}
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", False)  # fail closed (see config.py)
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", False)
    csrf.init_app(app)
    try:  # builds the storage client; connects only on the first limited request
        limiter.init_app(app)
    except (ConfigurationError, ValueError) as exc:
        message = str(exc).replace(uri, redacted(uri))
        raise ConfigError(f"DSAR_RATELIMIT_STORAGE_URI: {message}") from None


def redacted(uri: str) -> str:
    """``uri`` without its user and password, for messages and logs."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


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


def keep_own_retry_after() -> None:
    """Stop Flask-Limiter from overwriting a ``Retry-After`` the view set itself
    (e.g. a resend cooldown) with the end of its own window, which has nothing
    to do with that refusal. Relies on ``limiter.context`` (a test guards it)."""
    limiter.context.view_rate_limit = None
