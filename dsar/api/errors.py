"""How the API answers when something is wrong: always JSON, never a trace.

Every error has the shape ``{"error": {"code": ..., "message": ..., "fields": {...}?}}``
(plus ``attempts_left`` or ``retry_after`` where they help). ``code`` is stable
for programs; ``message`` is for people and comes from :mod:`dsar.texts`, so
it follows the company's wording. Unexpected exceptions become a bare 500 and
are logged by type and code location only: exception messages may carry
personal data (a database error echoes its parameters). The app database
being away is not a bug: a 503 with ``Retry-After`` and one log line per
outage (:class:`dsar.extensions.DatabaseOutage`).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException, default_exceptions

from ..extensions import DatabaseOutage, keep_own_retry_after
from ..runtime import runtime
from ..texts import say

log = logging.getLogger(__name__)

#: HTTP errors raised by Flask, Werkzeug or Flask-Limiter: (code, text key)
HTTP_ERRORS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "api.bad_request"),
    401: ("unauthorized", "api.token_missing"),
    403: ("forbidden", "api.forbidden"),
    404: ("not_found", "api.no_route"),
    405: ("method_not_allowed", "api.method_not_allowed"),
    413: ("body_too_large", "api.too_large"),
    415: ("unsupported_media_type", "api.content_type"),
    429: ("rate_limited", "api.rate_limited"),
}


class ApiError(Exception):
    """An answer other than success; raise it anywhere in a view."""

    def __init__(self, status: int, code: str, message: str, *,
                 fields: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(code)
        self.status, self.code, self.message = status, code, message
        self.fields = dict(fields) if fields is not None else None
        self.headers = dict(headers or {})
        self.extra = extra


def text(key: str, **params: Any) -> str:
    """The requester-facing text ``key`` of the running app, formatted as
    :func:`dsar.texts.say` does (one in the singular, a wait in words)."""
    return say(runtime().texts, key, **params)


def error_response(error: ApiError) -> Response:
    body: dict[str, Any] = {"code": error.code, "message": error.message, **error.extra}
    if error.fields is not None:
        body["fields"] = error.fields
    response = jsonify(error=body)
    response.status_code = error.status
    response.headers.update(error.headers)
    if "Retry-After" in error.headers:
        keep_own_retry_after()
    return response


def handle_api_error(error: ApiError) -> Response:
    return error_response(error)


def handle_http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code, key = HTTP_ERRORS.get(status, ("", "api.http_error"))
    code = code or (exc.name or "error").lower().replace(" ", "_").replace("'", "")
    message = text(key, name=exc.name, method=request.method)
    # Allow in one order (werkzeug joins a set: its order changes between processes)
    headers = {k: ", ".join(sorted(v.split(", "))) for k, v in exc.get_headers()
               if k.lower() == "allow"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="dsar"'
    return error_response(ApiError(status, code, message, headers=headers))


def handle_unexpected(exc: Exception) -> Response:
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = " < ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}"
                       for f in reversed(frames))
    log.error("unexpected %s in %s at %s", type(exc).__name__, request.endpoint, where)
    return error_response(ApiError(500, "internal_error", text("api.internal")))


def handle_database_error(exc: SQLAlchemyError) -> Response:
    """The app database away (unreachable, restarting, locked past its
    timeout): 503 with a short Retry-After, noted once per outage. The view's
    transaction has rolled back. Any other database error is a bug (500)."""
    outage = DatabaseOutage.current()
    if not outage.covers(exc):
        return handle_unexpected(exc)
    outage.refused(exc)
    seconds = outage.RETRY_AFTER_SECONDS
    return error_response(ApiError(503, "temporarily_unavailable", text("api.unavailable"),
                                   headers={"Retry-After": str(seconds)}, retry_after=seconds))


def register(bp: Blueprint) -> None:
    """Answer every error raised while ``bp`` handles a request in JSON.

    Code-specific handlers too: an application-wide handler for a status code
    would otherwise be found before the blueprint's handler by exception class.
    """
    bp.register_error_handler(ApiError, handle_api_error)
    for status in default_exceptions:
        bp.register_error_handler(status, handle_http_error)
    bp.register_error_handler(HTTPException, handle_http_error)
    bp.register_error_handler(SQLAlchemyError, handle_database_error)
    bp.register_error_handler(Exception, handle_unexpected)
