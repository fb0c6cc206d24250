"""Portal views: load → check → one workflow call → commit → render or redirect.

The status token travels once in a URL (the link in the email) and is moved
into the session cookie at once (:mod:`.tokens`); every later page and form of
that request reads it from there, so it never sits in the address bar, the
history, the access log or a Referer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Response, abort, flash, redirect, request, send_file, url_for
from sqlalchemy.orm import Session
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.wrappers import Response as BaseResponse

from ..extensions import holder_key, keep_own_retry_after, rate_limits
from ..models import Request, RequestToken, TokenHolder
from ..runtime import Runtime, runtime
from ..texts import duration, say
from ..workflow import downloads, verification
from . import bp, tokens
from .forms import read_code, read_submit, summary
from .pages import message, render, status_context

#: HTTP status of each way a code can be refused (the rest are 400)
CODE_STATUS: dict[type[verification.VerificationError], int] = {
    verification.NotWaiting: 409, verification.CodeExpired: 410}


def _by_token(session: Session, rt: Runtime, request_id: str, token: str) -> RequestToken:
    """The token row if ``token`` is one of request ``request_id``'s, else 404
    (also for unknown ids)."""
    found = verification.find_token(session, rt, request_id, token)
    if found is None:
        abort(404)
    return found


def _held(session: Session, rt: Runtime, request_id: str) -> RequestToken:
    """The token this browser holds for ``request_id``, if still valid, else 404."""
    return _by_token(session, rt, request_id, tokens.token_for(request_id))


def _load(session: Session, rt: Runtime, request_id: str) -> Request:
    """The request this browser holds a valid token of, else 404 (also for unknown ids)."""
    return _held(session, rt, request_id).request


def _to_status(request_id: str) -> BaseResponse:
    return redirect(url_for(".status", request_id=request_id), 303)


@bp.get("/")
def index() -> Response:
    """The form; ``?kind=access`` (the status page's "ask again" link) chooses the kind."""
    return render("portal_form.html", values={"kind": request.args.get("kind")}, errors={},
                  summary=[])


@bp.post("/requests")
@rate_limits.limit("SUBMIT")
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
        page = _page(session, rt, _held(session, rt, request_id))
    return render("portal_status.html", **page, errors={}, summary=[])


def _page(session: Session, rt: Runtime, held: RequestToken) -> dict[str, Any]:
    """The status page's context, with what this browser can do with the code:
    enter it, unless too many wrong ones were entered with its kind of token
    (then only ask for a new one, or use the link in the email), and ask for
    a new one now or in how long."""
    page = status_context(session, rt, held)
    state = verification.code_state(session, rt, held.request, held.holder)
    page["locked"] = state is not None and state.locked
    page["by_mail"] = held.holder == TokenHolder.MAIL.value
    page["resend_wait"] = (duration(rt.texts, state.resend_in)
                           if state is not None and state.resend_in > 0 else None)
    return page


@dataclass(frozen=True)
class _Refusal:
    text: str
    status: int


@bp.post("/requests/<request_id>/verify")
@rate_limits.limit("VERIFY")
@rate_limits.limit("VERIFY", key_func=holder_key(tokens.token_for))
def verify(request_id: str) -> Response | BaseResponse:
    rt = runtime()
    code = read_code(request.form)
    with rt.transaction() as session:  # commits a refused code too: attempts count
        held = _held(session, rt, request_id)
        refusal = _check(session, rt, held, code)
        page = _page(session, rt, held) if refusal is not None else {}
    if refusal is None:
        return _to_status(request_id)
    anchor = "code" if page["verifying"] and not page["locked"] else None
    return render("portal_status.html", refusal.status, **page, errors={"code": refusal.text},
                  summary=[(anchor, refusal.text)])


def _check(session: Session, rt: Runtime, held: RequestToken, code: str | None
           ) -> _Refusal | None:
    """Refused, or verified: then this browser holds the verifier's new token
    (the one it had, like every token issued before, stops working)."""
    if code is None:  # not 6 digits: no attempt is spent on a typo
        return _Refusal(rt.texts["verify.format"], 400)
    try:
        fresh = verification.check(session, rt, held.request, code, held.holder)
    except verification.VerificationError as exc:
        return _Refusal(say(rt.texts, exc.key, **exc.params), CODE_STATUS.get(type(exc), 400))
    tokens.remember(held.request_id, fresh)
    return None


@bp.post("/requests/<request_id>/resend")
@rate_limits.limit("RESEND")
@rate_limits.limit("RESEND", key_func=holder_key(tokens.token_for))
def resend(request_id: str) -> Response | BaseResponse:
    """A new code, or, too soon, the request's own page saying when (429)."""
    rt = runtime()
    with rt.transaction() as session:
        held = _held(session, rt, request_id)
        try:
            verification.resend(session, rt, rt.texts, held.request)
        except verification.ResendTooSoon as exc:
            text, wait = say(rt.texts, exc.key, **exc.params), exc.params["seconds"]
            page = _page(session, rt, held)
        except verification.NotWaiting as exc:
            return message("error.409.title", rt.texts[exc.key], 409)
        else:
            flash(rt.texts["resend.sent"])
            return _to_status(request_id)
    response = render("portal_status.html", 429, **page, errors={}, summary=[(None, text)])
    response.headers["Retry-After"] = str(wait)
    keep_own_retry_after()
    return response


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
