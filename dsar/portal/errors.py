"""How the portal answers when something is wrong, and the headers of every answer.

Errors get a friendly page in the requester's words (``error.<code>.*`` in
``dsar/texts.py``), never a stack trace. The app database being away is a
503 "try again shortly" page. Other unhandled exceptions are left to
Flask: logged, and propagated when ``TESTING`` is on, so tests see them.
"""

from __future__ import annotations

import time

from flask import Response, request
from flask.blueprints import BlueprintSetupState
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, default_exceptions

from ..extensions import DatabaseOutage, rate_limits
from ..runtime import runtime
from ..texts import say
from . import bp
from .pages import message

MAX_CONTENT_LENGTH = 64 * 1024
CSP = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"


@bp.record_once
def _configure(state: BlueprintSetupState) -> None:
    """Limits the portal needs from the app: small bodies, a same-site
    session cookie (it carries the status tokens), Secure over HTTPS."""
    config = state.app.config
    if config.get("MAX_CONTENT_LENGTH") is None:
        config["MAX_CONTENT_LENGTH"] = MAX_CONTENT_LENGTH
    if config.get("SESSION_COOKIE_SAMESITE") is None:
        config["SESSION_COOKIE_SAMESITE"] = "Lax"
    if config.get("HTTPS"):  # (dsar.config: on in production, or over an https BASE_URL)
        config["SESSION_COOKIE_SECURE"] = True


@bp.after_request
def secure(response: Response) -> Response:
    """Security headers; nothing the portal answers may be cached but its stylesheet.

    ``Referrer-Policy: same-origin``: no other site ever learns a portal URL,
    and Flask-WTF's HTTPS check of the form's referrer keeps working (with
    ``no-referrer`` every form POST over HTTPS would fail). The status token
    is never in the URL of a rendered page: a link with ``?token=`` only
    redirects.
    """
    headers = response.headers
    headers["Content-Security-Policy"] = CSP
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "portal.static":
        headers["Cache-Control"] = "no-store"
    return response


def http_error(exc: HTTPException) -> Response:
    texts = runtime().texts
    code = exc.code or 500
    if isinstance(exc, CSRFError):
        return message("error.csrf.title", texts["error.csrf.body"], 400)
    if code == 429:
        return _too_many()
    key = f"error.{code}" if f"error.{code}.body" in texts else f"error.{code // 100}00"
    if f"{key}.body" not in texts:
        key = "error.generic"
    response = message(f"{key}.title", texts[f"{key}.body"], code)
    response.headers.extend([(k, v) for k, v in exc.get_headers() if k.lower() == "allow"])
    return response


# by code too: Flask prefers any handler for the code (even an app-wide one)
# over a handler for the class
for _code in default_exceptions:
    bp.register_error_handler(_code, http_error)
bp.register_error_handler(HTTPException, http_error)


@bp.errorhandler(SQLAlchemyError)
def database_error(exc: SQLAlchemyError) -> Response:
    """The app database away: a plain "try again shortly" page, 503 with a short
    Retry-After, noted once per outage (the view's transaction rolled back).
    Any other database error is a bug: left to Flask, like every exception."""
    outage = DatabaseOutage.current()
    if not outage.covers(exc):
        raise exc
    outage.refused(exc)
    texts = runtime().texts
    response = message("error.unavailable.title", texts["error.unavailable.body"], 503)
    response.headers["Retry-After"] = str(outage.RETRY_AFTER_SECONDS)
    return response


@bp.app_errorhandler(NotFound)
@bp.app_errorhandler(MethodNotAllowed)
def routing_error(exc: HTTPException) -> HTTPException | Response:
    """An address no route knows (or the wrong method): the portal's page,
    except under /api/, which answers in its own format, and /console/ (its own page)."""
    if request.path.startswith("/api/"):
        return exc
    if request.path.startswith("/console/"):
        from ..console import errors as console_errors

        return console_errors.secure(console_errors.http_error(exc))
    return secure(http_error(exc))


def _too_many() -> Response:
    """The limiter's 429: the wait in words on the page, in seconds in Retry-After."""
    limit = rate_limits.current.current_limit
    seconds = max(1, int(limit.reset_at - time.time())) if limit is not None else 60
    response = message("error.429.title", say(runtime().texts, "error.429.body",
                                              seconds=seconds), 429)
    response.headers["Retry-After"] = str(seconds)
    return response
