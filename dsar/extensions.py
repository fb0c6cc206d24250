"""The Flask extensions, created unbound and attached in ``create_app``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect
from limits.errors import ConfigurationError, StorageError
from sqlalchemy import event
from werkzeug.exceptions import ServiceUnavailable

from .config import ConfigError
from .database import Outage, is_unavailable

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

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


@dataclass(frozen=True)
class ViewLimit:
    """``RATE_LIMIT_<setting>`` on one view, counted under ``key_func`` (the
    client's address when ``None``), unless ``exempt_when`` says otherwise."""

    setting: str
    key_func: Callable[[], str] | None = None
    exempt_when: Callable[[], bool] | None = None


class RateLimits:
    """The rate limiter as a Flask extension, one :class:`FailClosedLimiter` per app.

    Views declare their limits where they are defined (:meth:`limit`): that
    only records them on the function. Each app gets its own limiter, with its
    own storage, settings and counters, in ``app.extensions[KEY]``
    (:meth:`init_app`); :meth:`apply` then wraps that app's routed views with
    its limiter's ``limit(...)``, so two apps in one process share nothing. A
    declared view reached without :meth:`apply` refuses to run (never unlimited).
    """

    KEY = "dsar.limiter"
    _DECLARED = "_dsar_rate_limits"
    _APPLIED = "_dsar_rate_limiter"

    def limit(self, setting: str, *, key_func: Callable[[], str] | None = None,
              exempt_when: Callable[[], bool] | None = None) -> Callable[[F], F]:
        """Limit the decorated view's POSTs to ``RATE_LIMIT_<setting>`` per key."""

        def declare(view: F) -> F:
            declared: list[ViewLimit] | None = getattr(view, self._DECLARED, None)
            if declared is None:
                view = cast(F, self._guarded(view))
                declared = []
                setattr(view, self._DECLARED, declared)
            declared.append(ViewLimit(setting, key_func, exempt_when))
            return view

        return declare

    def init_app(self, app: Flask) -> FailClosedLimiter:
        """Give ``app`` its own limiter, reading its ``RATELIMIT_*`` settings."""
        limiter = FailClosedLimiter(key_func=get_remote_address, default_limits=[],
                                    headers_enabled=True)
        # after-request functions run last-registered first: these two wrap the
        # limiter's own, which sets Retry-After to its window on every limited answer
        app.after_request(_limiter_retry_after_on_429_only)
        limiter.init_app(app)
        app.after_request(_note_own_retry_after)
        app.extensions[self.KEY] = limiter
        return limiter

    def apply(self, app: Flask) -> None:
        """Wrap every view of ``app`` that declares limits with ``app``'s limiter
        (after the blueprints are registered; once per app)."""
        limiter: FailClosedLimiter = app.extensions[self.KEY]
        for endpoint, view in list(app.view_functions.items()):
            declared: list[ViewLimit] | None = getattr(view, self._DECLARED, None)
            if declared is None or getattr(view, self._APPLIED, None) is limiter:
                continue
            wrapped: Callable[..., Any] = view
            for spec in declared:
                wrapped = limiter.limit(configured_limit(spec.setting), key_func=spec.key_func,
                                        exempt_when=spec.exempt_when, methods=["POST"])(wrapped)
            setattr(wrapped, self._APPLIED, limiter)
            app.view_functions[endpoint] = wrapped

    @property
    def current(self) -> FailClosedLimiter:
        """The limiter of the app handling this request."""
        limiter: FailClosedLimiter = current_app.extensions[self.KEY]
        return limiter

    def _guarded(self, view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            limiter = current_app.extensions.get(self.KEY)
            routed = current_app.view_functions.get(request.endpoint or "")
            if limiter is None or getattr(routed, self._APPLIED, None) is not limiter:
                raise RuntimeError(f"{request.endpoint}: rate limits declared but not applied "
                                   "to this app (RateLimits.apply)")
            return current_app.ensure_sync(view)(*args, **kwargs)

        return guarded


class DatabaseOutage:
    """How the web faces note that the app database is gone (a
    :class:`dsar.database.Outage`: one line when first seen, one when back).

    One per app (``app.extensions[KEY]``); the end is seen by any commit of the
    app's sessions, a worker's included.
    """

    KEY = "dsar.database_outage"
    #: the ``Retry-After`` of a 503 while the database is gone (seconds)
    RETRY_AFTER_SECONDS = 5

    def __init__(self) -> None:
        self._note = Outage(log, "answering 503 with Retry-After until it is back")

    def init_app(self, app: Flask) -> None:
        app.extensions[self.KEY] = self
        event.listen(app.extensions["dsar"].sessionmaker, "after_commit", self._committed)

    @classmethod
    def current(cls) -> DatabaseOutage:
        outage: DatabaseOutage = current_app.extensions[cls.KEY]
        return outage

    @staticmethod
    def covers(exc: BaseException) -> bool:
        """Is ``exc`` the database being away (not a bug), so worth a 503?"""
        return is_unavailable(exc)

    def refused(self, exc: BaseException) -> None:
        """A request was answered 503 because of ``exc``."""
        self._note.failed(exc)

    def _committed(self, _session: Any) -> None:
        self._note.ended()


csrf = CSRFProtect()
rate_limits = RateLimits()


def init_extensions(app: Flask) -> None:
    """Bind CSRF protection, the database outage note and the rate limiter to ``app``.

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
    DatabaseOutage().init_app(app)
    try:  # builds the storage client; connects only on the first limited request
        rate_limits.init_app(app)
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


def holder_key(token_of: Callable[[str], str]) -> Callable[[], str]:
    """A rate-limit key of the request named in the URL and of the status
    token the client presents for it (``token_of(request_id)``), as a keyed
    digest: each holder of a token has their own counter, so nobody who
    merely submitted someone's address can use up its owner's attempts.
    Guessing codes is bounded by the code's own attempt counters."""

    def key() -> str:
        from .runtime import runtime

        request_id = str((request.view_args or {}).get("request_id", "none"))[:64]
        token = runtime().crypto.token_digest(f"limit:{token_of(request_id)}")
        return f"request:{request_id}:{token[:24]}"

    return key


def configured_limit(name: str) -> Callable[[], str]:
    """A limit read from the app's settings at request time (``RATE_LIMIT_<NAME>``)."""
    return lambda: str(current_app.config[f"RATE_LIMIT_{name}"])


def _note_own_retry_after(response: Response) -> Response:
    g.dsar_own_retry_after = response.headers.get("Retry-After")
    return response


def _limiter_retry_after_on_429_only(response: Response) -> Response:
    """An answer that set its own ``Retry-After`` keeps it, the limiter's 429
    page too (its text says the same wait; the limiter's, computed a moment
    later, could be a second less). Without one, only a refusal by the limiter
    keeps the limiter's (the end of its window, up to an hour): a success that
    said "come back in an hour" would be obeyed."""
    own = g.pop("dsar_own_retry_after", None)
    if own is not None:  # the answer's own, also on the limiter's 429 (its page says it)
        response.headers["Retry-After"] = own
    elif response.status_code != 429:
        response.headers.pop("Retry-After", None)
    return response


def keep_own_retry_after() -> None:
    """Stop Flask-Limiter from overwriting a ``Retry-After`` the view set itself
    (e.g. a resend cooldown) with the end of its own window, which has nothing
    to do with that refusal. Relies on ``Limiter.context`` (a test guards it)."""
    rate_limits.current.context.view_rate_limit = None
