"""An officer's own account: a new password, new recovery codes; and the
admin's reset of an officer who lost both factors."""

from __future__ import annotations

from flask import Response, abort, redirect, request, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from ..models import Officer
from ..officers import accounts
from ..officers.accounts import OfficerError
from ..runtime import runtime
from . import access, bp
from .errors import page
from .views import render


@bp.get("/account")
@access.allow(access.EVERYONE)
def account() -> Response:
    return render("console_account.html", errors={}, summary=[])


@bp.post("/account/password")
@access.allow(access.EVERYONE)
def account_password() -> Response | BaseResponse:
    current = str(request.form.get("current", ""))
    new = str(request.form.get("new", ""))
    errors = {}
    if new != str(request.form.get("confirm", "")):
        errors["confirm"] = "The two new passwords are not the same"
    if not errors:
        rt = runtime()
        try:
            with rt.transaction() as session:
                accounts.change_password(session, rt, _attached(session), current, new)
        except OfficerError as exc:
            errors["current" if "current" in str(exc) else "new"] = str(exc)
        else:  # every session ended, this one too
            response = redirect(url_for(".sign_in"), 303)
            access.forget(response)
            return response
    return render("console_account.html", 400, errors=errors, summary=list(errors.items()))


@bp.post("/account/recovery-codes")
@access.allow(access.EVERYONE)
def account_recovery_codes() -> Response:
    rt = runtime()
    try:
        with rt.transaction() as session:
            codes = accounts.renew_recovery_codes(session, rt, _attached(session),
                                                  str(request.form.get("password", "")))
    except OfficerError as exc:
        errors = {"password": str(exc)}
        return render("console_account.html", 400, errors=errors, summary=list(errors.items()))
    return render("console_codes.html", codes=codes, renewed=True)


def _attached(session: Session) -> Officer:
    """The signed-in officer's row in ``session``."""
    officer = session.get(Officer, access.current().id)
    if officer is None:
        abort(404)
    return officer


@bp.route("/officers/<officer_id>/reset", methods=["GET", "POST"])
@access.allow(access.ADMINS)
def officer_reset(officer_id: str) -> Response | BaseResponse:
    rt = runtime()
    with rt.transaction() as session:
        officer = session.get(Officer, officer_id) if len(officer_id) <= 32 else None
        if officer is None:
            abort(404)
        email = accounts.email_of(rt, officer)
        if request.method == "GET":
            return render("console_officer_reset.html", officer_id=officer_id, email=email)
        try:
            invitation = accounts.reset(session, rt, officer, actor=access.current().actor)
        except OfficerError as exc:
            return page("That cannot be done now", str(exc).capitalize() + ".", 409)
    return render("console_officer_invited.html", email=email, url=invitation.url,
                  expires_at=invitation.expires_at)
