"""The console's headers on every answer and its error pages.

Every console answer is ``no-store`` (a shared computer's back button shows
nothing), under a strict CSP (no script, no inline style, nothing from
elsewhere), never framed. Errors get a plain page, never a stack trace;
the app database being away is a 503 "try again shortly".
"""

from __future__ import annotations

from flask import Response, make_response, render_template
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException, default_exceptions

from ..extensions import DatabaseOutage
from . import access, bp

CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
TITLES = {400: "Something in the form was not right", 403: "Not open to your role",
          404: "Page not found", 405: "Not allowed here", 409: "That cannot be done now",
          413: "Too much was sent", 429: "Too many tries",
          500: "Something went wrong on our side",
          503: "The console is not available at the moment"}
BODIES = {403: "Your role does not give access to this page. An admin can change roles.",
          404: "Check the address, or go back to the queue.",
          503: "Try again in a few seconds.",
          500: "It has been logged. Try again, and tell an admin if it keeps happening."}


bp.before_request(access.check)


@bp.after_request
def secure(response: Response) -> Response:
    headers = response.headers
    headers["Content-Security-Policy"] = CSP
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "same-origin"
    headers["Cache-Control"] = "no-store"
    return response


def page(title: str, body: str, status: int) -> Response:
    return make_response(render_template("console_message.html", title=title, body=body),
                         status)


def http_error(exc: HTTPException) -> Response:
    code = exc.code or 500
    if isinstance(exc, CSRFError):
        return page("The form had expired",
                    "Forms in the console expire for your safety. Go back, reload the page "
                    "and try again.", 400)
    title = TITLES.get(code, TITLES[code // 100 * 100] if code // 100 * 100 in TITLES
                       else "Something went wrong")
    body = BODIES.get(code, exc.description or "")
    response = page(title, body, code)
    response.headers.extend([(k, v) for k, v in exc.get_headers() if k.lower() == "allow"])
    return response


for _code in default_exceptions:
    bp.register_error_handler(_code, http_error)
bp.register_error_handler(HTTPException, http_error)


@bp.errorhandler(SQLAlchemyError)
def database_error(exc: SQLAlchemyError) -> Response:
    outage = DatabaseOutage.current()
    if not outage.covers(exc):
        raise exc
    outage.refused(exc)
    response = page(TITLES[503], BODIES[503], 503)
    response.headers["Retry-After"] = str(outage.RETRY_AFTER_SECONDS)
    return response
