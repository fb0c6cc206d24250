"""What admins do in the console: invite officers, change their roles,
disable them, and see whether every connector answers (secrets masked).

Each change is one transaction with its audit event naming the admin
(``officer:<id>``); removing the last active admin is refused (409).
"""

from __future__ import annotations

from flask import Response, abort, flash, redirect, request, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from ..config import ConfigError
from ..models import Officer, OfficerRole
from ..officers import accounts
from ..officers.accounts import OfficerError
from ..registry import check_connectors
from ..runtime import Runtime, runtime
from . import access, bp
from .errors import page
from .views import render

ROLE_HINTS = {
    OfficerRole.AUDITOR: "Reads requests and the audit trail. Cannot act on requests.",
    OfficerRole.REVIEWER: "Also works the queue: approves, denies, extends, pauses, retries.",
    OfficerRole.ADMIN: "Also manages officers and sees the connectors' status.",
}


def _officer(session: Session, officer_id: str) -> Officer:
    found = session.get(Officer, officer_id) if len(officer_id) <= 32 else None
    if found is None:
        abort(404)
    return found


def _row(rt: Runtime, officer: Officer) -> dict[str, str]:
    return {"id": officer.id, "email": accounts.email_of(rt, officer), "role": officer.role,
            "status": officer.status, "created_at": officer.created_at.strftime("%Y-%m-%d")}


@bp.get("/officers")
@access.allow(access.ADMINS)
def officers() -> Response:
    rt = runtime()
    with rt.transaction() as session:
        rows = [_row(rt, o) for o in accounts.everyone(session)]
    return render("console_officers.html", rows=rows)


@bp.route("/officers/new", methods=["GET", "POST"])
@access.allow(access.ADMINS)
def officer_new() -> Response:
    values = {"email": str(request.form.get("email", "")).strip(),
              "role": str(request.form.get("role", ""))}
    if request.method == "GET":
        return _new_page(values, {})
    errors = {}
    if values["role"] not in {r.value for r in OfficerRole}:
        errors["role"] = "Choose a role"
    if not values["email"]:
        errors["email"] = "Enter the officer's email address"
    if not errors:
        rt = runtime()
        try:
            with rt.transaction() as session:
                invitation = accounts.create(session, rt, values["email"], values["role"],
                                             actor=access.current().actor)
        except OfficerError as exc:
            errors["email"] = str(exc).capitalize()
        else:
            return render("console_officer_invited.html", email=values["email"],
                          url=invitation.url, expires_at=invitation.expires_at)
    return _new_page(values, errors, 400)


def _new_page(values: dict[str, str], errors: dict[str, str], status: int = 200) -> Response:
    summary = [("role-auditor" if name == "role" else name, text) for name, text in errors.items()]
    return render("console_officer_new.html", status, values=values, errors=errors,
                  summary=summary, roles=ROLE_HINTS)


@bp.get("/officers/<officer_id>")
@access.allow(access.ADMINS)
def officer(officer_id: str) -> Response:
    rt = runtime()
    with rt.transaction() as session:
        row = _row(rt, _officer(session, officer_id))
    return render("console_officer.html", officer=row, roles=ROLE_HINTS, errors={}, summary=[])


@bp.post("/officers/<officer_id>/role")
@access.allow(access.ADMINS)
def officer_role(officer_id: str) -> Response | BaseResponse:
    rt = runtime()
    role = str(request.form.get("role", ""))
    if role not in {r.value for r in OfficerRole}:
        with rt.transaction() as session:
            row = _row(rt, _officer(session, officer_id))
        errors = {"role": "Choose a role"}
        return render("console_officer.html", 400, officer=row, roles=ROLE_HINTS,
                      errors=errors, summary=[("role-auditor", errors["role"])])
    try:
        with rt.transaction() as session:
            accounts.set_role(session, rt, _officer(session, officer_id), role,
                              actor=access.current().actor)
    except OfficerError as exc:
        return page("That cannot be done now", str(exc).capitalize() + ".", 409)
    flash(f"The officer's role is now {role}. Their sessions ended: they sign in again.")
    return redirect(url_for(".officer", officer_id=officer_id), 303)


@bp.route("/officers/<officer_id>/disable", methods=["GET", "POST"])
@access.allow(access.ADMINS)
def officer_disable(officer_id: str) -> Response | BaseResponse:
    rt = runtime()
    if request.method == "GET":
        with rt.transaction() as session:
            row = _row(rt, _officer(session, officer_id))
        return render("console_officer_disable.html", officer=row)
    try:
        with rt.transaction() as session:
            accounts.disable(session, rt, _officer(session, officer_id),
                             actor=access.current().actor)
    except OfficerError as exc:
        return page("That cannot be done now", str(exc).capitalize() + ".", 409)
    flash("The officer is disabled: their sessions ended and they cannot sign in.")
    return redirect(url_for(".officer", officer_id=officer_id), 303)


@bp.post("/officers/<officer_id>/invite")
@access.allow(access.ADMINS)
def officer_invite(officer_id: str) -> Response:
    rt = runtime()
    try:
        with rt.transaction() as session:
            target = _officer(session, officer_id)
            email = accounts.email_of(rt, target)
            invitation = accounts.invite_again(session, rt, target,
                                               actor=access.current().actor)
    except OfficerError as exc:
        return page("That cannot be done now", str(exc).capitalize() + ".", 409)
    return render("console_officer_invited.html", email=email, url=invitation.url,
                  expires_at=invitation.expires_at)


@bp.get("/connectors")
@access.allow(access.ADMINS)
def connectors() -> Response:
    """Each connector's check, run now (secrets masked)."""
    rt = runtime()
    try:
        configured = rt.connectors
    except ConfigError as exc:  # its message names the file and key, secrets masked
        return render("console_connectors.html", results=[],
                      problem=f"The connector file cannot be used: {exc}")
    return render("console_connectors.html", results=check_connectors(configured), problem=None)
