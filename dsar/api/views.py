"""The API's routes: parse, authenticate, call one workflow function, answer.

Each view runs one transaction (``rt.transaction()``): committed when the view
gets past its workflow call, rolled back on any error, except a wrong code,
whose counted attempt is committed before the refusal is answered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, current_app, g, request, send_file, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, MapAdapter, Rule

from ..extensions import client_address, holder_key, rate_limits
from ..models import Request
from ..registry import labels
from ..runtime import Runtime, runtime
from ..schemas.requester import RequestRequesterView
from ..workflow import downloads, verification
from ..workflow.states import RequestKind, Status
from . import bp
from .errors import ApiError, text
from .guards import before_api_request, load, owned, presented_token
from .schemas import ExportView, ResendBody, ResentView, SubmitBody, SubmittedView, VerifyBody

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

bp.before_request(before_api_request)


@bp.after_request
def no_store(response: Response) -> Response:
    """Answers carry tokens and personal data: no cache may keep them."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if request.method == "OPTIONS" and request.endpoint != "api.no_route":
        # Flask's answer would list the catch-all route's methods as well
        response.headers["Allow"] = ", ".join(sorted(api_routes().allowed_methods(request.path)))
    return response


def limited(name: str, *keys: Callable[[], str]) -> Callable[[F], F]:
    """``RATE_LIMIT_<name>`` counted separately under each key (an address
    not sent is not counted: the body is refused anyway)."""

    def decorate(view: F) -> F:
        for key in keys:
            view = rate_limits.limit(name, key_func=key)(view)
        return view

    return decorate


@bp.post("/requests")
@limited("SUBMIT", client_address)
def submit() -> ResponseReturnValue:
    data = load(SubmitBody())
    rt = runtime()
    with rt.transaction() as session:
        started = verification.receive(session, rt, data["kind"], data["email"],
                                       name=data["name"], message=data["message"])
        created = started.request
    body = SubmittedView().dump({"id": created.id, "status": created.status,
                                 "due_at": started.due_at or created.due_at,
                                 "status_token": started.status_token})
    return body, 202, {"Location": url_for(".status", request_id=created.id)}


@bp.post("/requests/<request_id>/verify")
@limited("VERIFY", client_address, holder_key(presented_token))
def verify(request_id: str) -> ResponseReturnValue:
    rt = runtime()
    refused: verification.VerificationError | None = None
    body: dict[str, Any] = {}
    with rt.transaction() as session:
        found = owned(session, rt, request_id)
        code = load(VerifyBody())["code"]
        try:
            fresh = verification.check(session, rt, found, code, g.api_holder)
            # every token issued before verification stops working: this is the new one
            body = {**status_document(session, rt, found), "status_token": fresh}
        except verification.VerificationError as exc:
            refused = exc  # a wrong code's counted attempt commits with the rest
    if refused is not None:
        raise refusal(refused)
    return body, 200


@bp.post("/requests/<request_id>/resend")
@limited("RESEND", client_address, holder_key(presented_token))
def resend(request_id: str) -> ResponseReturnValue:
    rt = runtime()
    try:
        with rt.transaction() as session:
            found = owned(session, rt, request_id)
            load(ResendBody(), required=False)
            verification.resend(session, rt, rt.texts, found)
            body = ResentView().dump({"id": found.id, "status": found.status,
                                      "message": text("resend.sent")})
    except verification.VerificationError as exc:
        raise refusal(exc) from None
    return body, 202


@bp.get("/requests/<request_id>")
def status(request_id: str) -> ResponseReturnValue:
    rt = runtime()
    with rt.transaction() as session:
        return status_document(session, rt, owned(session, rt, request_id)), 200


@bp.get("/requests/<request_id>/export")
def export(request_id: str) -> ResponseReturnValue:
    if request.method == "HEAD":  # a link checker must not use up a download
        raise MethodNotAllowed(valid_methods=["GET"])
    rt = runtime()
    with rt.transaction() as session:
        found = owned(session, rt, request_id)
        if found.kind != RequestKind.ACCESS:
            raise ApiError(409, "no_export", text("api.no_export"))
        try:
            path = downloads.take(session, rt, found)
        except downloads.DownloadRefused as exc:
            status_code, code = REFUSED_DOWNLOADS.get(exc.key, (409, "export_not_ready"))
            raise ApiError(status_code, code, text(exc.key)) from None
    return send_file(path, mimetype="application/zip", as_attachment=True,
                     download_name=f"dsar-export-{found.id}.zip", conditional=False, etag=False)


ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@bp.route("/", defaults={"rest": ""}, endpoint="no_route", methods=ALL_METHODS,
          provide_automatic_options=False)
@bp.route("/<path:rest>", endpoint="no_route", methods=ALL_METHODS,
          provide_automatic_options=False)
def no_route(rest: str) -> ResponseReturnValue:
    """Anything under /api/v1 no route matches: a JSON 404, or a 405 when the
    path exists with other methods (the routing itself would answer in HTML)."""
    api_routes().match(request.path, method=request.method)
    raise NotFound()  # pragma: no cover - matched a real route, which Flask would have chosen


def api_routes() -> MapAdapter:
    """The API's own routes without the catch-all, to tell 404 from 405."""
    rules = [Rule(rule.rule, endpoint=rule.endpoint, methods=rule.methods)
             for rule in current_app.url_map.iter_rules()
             if rule.endpoint.startswith("api.") and rule.endpoint != "api.no_route"]
    return Map(rules).bind("api")


# -- answers -------------------------------------------------------------------------------

VERIFICATION_REFUSALS: dict[type[verification.VerificationError], tuple[int, str]] = {
    verification.WrongCode: (400, "wrong_code"),
    verification.CodeExpired: (410, "code_expired"),
    verification.TooManyAttempts: (410, "too_many_attempts"),
    verification.NotWaiting: (409, "not_waiting"),
    verification.ResendTooSoon: (429, "resend_too_soon"),
}
REFUSED_DOWNLOADS = {"download.not_ready": (409, "export_not_ready"),
                     "download.expired": (410, "export_expired"),
                     "download.exhausted": (410, "export_exhausted")}


def refusal(exc: verification.VerificationError) -> ApiError:
    """The API's answer to a refused code or resend, in the requester's words."""
    status_code, code = VERIFICATION_REFUSALS.get(type(exc), (409, "not_waiting"))
    extra: dict[str, Any] = {}
    headers = {}
    if isinstance(exc, verification.WrongCode):
        extra["attempts_left"] = exc.params["left"]
    if isinstance(exc, verification.ResendTooSoon):
        extra["retry_after"] = exc.params["seconds"]
        headers["Retry-After"] = str(exc.params["seconds"])
    return ApiError(status_code, code, text(exc.key, **exc.params), headers=headers, **extra)


def status_document(session: Session, rt: Runtime, found: Request) -> dict[str, Any]:
    """The requester's view of ``found``, with its download when there is one."""
    document: dict[str, Any] = RequestRequesterView(labels=labels(rt.connectors)).dump(found)
    received_at, due_at = verification.as_seen(g.api_held)  # owned() found it
    document["received_at"], document["due_at"] = received_at.isoformat(), due_at.isoformat()
    document["export"] = export_state(session, rt, found)
    return document


def export_state(session: Session, rt: Runtime, found: Request) -> dict[str, Any] | None:
    """``None`` until an access request is completed; then whether
    :func:`dsar.workflow.downloads.take` would hand the zip out."""
    if found.kind != RequestKind.ACCESS or found.status != Status.COMPLETED:
        return None
    state = downloads.availability(rt, downloads.bundle_of(session, found))
    return dict(ExportView().dump({
        "available": state.refusal is None,
        "expires_at": state.expires_at,
        "downloads_left": state.left, "url": url_for(".export", request_id=found.id)}))
