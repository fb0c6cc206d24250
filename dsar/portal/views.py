"""Portal views: load → check → one workflow call → commit → render or redirect.

The status token travels once in a URL (the link in the email) and is moved
into the session cookie at once (:mod:`.tokens`); every later page and form of
that request reads it from there, so it never sits in the address bar, the
history, the access log or a Referer.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Response, abort, flash, redirect, request, send_file, url_for
from sqlalchemy.orm import Session
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.wrappers import Response as BaseResponse

from ..extensions import email_key, keep_own_retry_after, rate_limits, request_key
from ..models import Request
from ..runtime import Runtime, runtime
from ..texts import say
from ..workflow import downloads, verification
from . import bp, tokens
from .forms import read_code, read_submit, summary
from .pages import message, render, status_context

#: HTTP status of each way a code can be refused (the rest are 400)
CODE_STATUS: dict[type[verification.VerificationError], int] = {
    verification.NotWaiting: 409, verification.CodeExpired: 410}


def _by_token(session: Session, rt: Runtime, request_id: str, token: str) -> Request:
    """The request ``request_id`` if ``token`` is its own, else 404 (also for unknown ids)."""
    found = verification.by_token(session, rt, request_id, token)
    if found is None:
        abort(404)
    return found


def _load(session: Session, rt: Runtime, request_id: str) -> Request:
    """The request this browser holds the token of, else 404 (also for unknown ids)."""
    return _by_token(session, rt, request_id, tokens.token_for(request_id))


def _to_status(request_id: str) -> BaseResponse:
    return redirect(url_for(".status", request_id=request_id), 303)


@bp.get("/")
def index() -> Response:
    return render("portal_form.html", values={}, errors={}, summary=[])


@bp.post("/requests")
@rate_limits.limit("SUBMIT")
@rate_limits.limit("SUBMIT", key_func=email_key)
def submit() -> Response | BaseResponse:
    rt = runtime()
    form = read_submit(request.form, rt.texts)
    if form.errors:
        return render("portal_form.html", 400, values=form.values, errors=form.errors,
                      summary=summary(form.errors))
    data = form.data
    with rt.transaction() as session:
        started = verification.receive(session, rt, data["kind"], data["email"],
                                       name=data.get("name"), message=data.get("message"))
    tokens.remember(started.request.id, started.status_token)
    return _to_status(started.request.id)


@bp.get("/requests/<request_id>")
def status(request_id: str) -> Response | BaseResponse:
    rt = runtime()
    with rt.transaction() as session:
        if "token" in request.args:  # the link from the email: keep the token, drop the URL
            _by_token(session, rt, request_id, request.args["token"])
            tokens.remember(request_id, request.args["token"])
            return _to_status(request_id)
        page = status_context(session, rt, _load(session, rt, request_id))
    return render("portal_status.html", **page, errors={}, summary=[])


@dataclass(frozen=True)
class _Refusal:
    text: str
    status: int


@bp.post("/requests/<request_id>/verify")
@rate_limits.limit("VERIFY")
@rate_limits.limit("VERIFY", key_func=request_key)
def verify(request_id: str) -> Response | BaseResponse:
    rt = runtime()
    code = read_code(request.form)
    with rt.transaction() as session:  # commits a refused code too: attempts count
        found = _load(session, rt, request_id)
        refusal = _check(session, rt, found, code)
        page = status_context(session, rt, found)
    if refusal is None:
        return _to_status(request_id)
    anchor = "code" if page["verifying"] else None
    return render("portal_status.html", refusal.status, **page, errors={"code": refusal.text},
                  summary=[(anchor, refusal.text)])


def _check(session: Session, rt: Runtime, found: Request, code: str | None) -> _Refusal | None:
    if code is None:  # not 6 digits: no attempt is spent on a typo
        return _Refusal(rt.texts["verify.format"], 400)
    try:
        verification.check(session, rt, found, code)
    except verification.VerificationError as exc:
        return _Refusal(say(rt.texts, exc.key, **exc.params), CODE_STATUS.get(type(exc), 400))
    return None


@bp.post("/requests/<request_id>/resend")
@rate_limits.limit("RESEND")
@rate_limits.limit("RESEND", key_func=request_key)
def resend(request_id: str) -> Response | BaseResponse:
    rt = runtime()
    try:
        with rt.transaction() as session:
            found = _load(session, rt, request_id)
            verification.resend(session, rt, rt.texts, found, tokens.token_for(request_id))
    except verification.ResendTooSoon as exc:
        response = message("error.429.title", say(rt.texts, exc.key, **exc.params), 429)
        response.headers["Retry-After"] = str(exc.params["seconds"])
        keep_own_retry_after()
        return response
    except verification.NotWaiting as exc:
        return message("error.409.title", rt.texts[exc.key], 409)
    flash(rt.texts["resend.sent"])
    return _to_status(request_id)


@bp.get("/requests/<request_id>/download")
def download(request_id: str) -> Response:
    """The zip, counted; a link that is not ready (409), expired or used up (410)
    gets a page saying so. HEAD (mail scanners, link checkers) is refused, never
    counted."""
    if request.method == "HEAD":
        raise MethodNotAllowed(valid_methods=["GET"])
    rt = runtime()
    try:
        with rt.transaction() as session:
            path = downloads.take(session, rt, _load(session, rt, request_id))
    except downloads.DownloadRefused as exc:
        status = 409 if exc.key == "download.not_ready" else 410
        return message(f"error.{status}.title", rt.texts[exc.key], status)
    return send_file(path, mimetype="application/zip", as_attachment=True,
                     download_name=f"my-data-{request_id[:8]}.zip", max_age=0,
                     conditional=False, etag=False)
