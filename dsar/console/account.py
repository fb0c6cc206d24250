"""An officer's own account: a new password, new recovery codes, the mails
they subscribe to (:mod:`dsar.officers.subscriptions`); and the admin's reset
of an officer who lost both factors."""

from __future__ import annotations

from flask import Response, abort, flash, redirect, request, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from ..models import Officer
from ..officers import accounts, subscriptions
from ..officers.accounts import OfficerError
from ..runtime import runtime
from . import access, bp
from .errors import page
from .views import render

#: the due alert's choices on the account page: value -> label
ALERT_CHOICES = {"off": "Off", **{str(days): f"{subscriptions.plural(days, 'day')} before"
                                  for days in subscriptions.ALERT_DAYS}}
#: what the mail form is told when a value is not one of ours
WRONG_MAIL = {"weekly_summary": "Tick the weekly summary, or leave it unticked",
              "due_alert_days": "Choose when to be told about due dates from the list"}


def render_account(status: int = 200, errors: dict[str, str] | None = None,
                   mail: dict[str, str] | None = None) -> Response:
    """The account page; ``mail``: the mail form's values (the saved ones by default)."""
    if mail is None:
        with runtime().transaction() as session:
            officer = _attached(session)
            mail = {"weekly_summary": "yes" if officer.weekly_summary else "",
                    "due_alert_days": str(officer.due_alert_days or "off")}
    errors = errors or {}
    return render("console_account.html", status, errors=errors, summary=list(errors.items()),
                  mail=mail, alert_choices=ALERT_CHOICES)


@bp.get("/account")
@access.allow(access.EVERYONE)
def account() -> Response:
    return render_account()


@bp.post("/account/mail")
@access.allow(access.EVERYONE)
def account_mail() -> Response | BaseResponse:
    mail = {name: str(request.form.get(name, "")) for name in WRONG_MAIL}
    valid = {"weekly_summary": mail["weekly_summary"] in ("", "yes"),
             "due_alert_days": mail["due_alert_days"] in ALERT_CHOICES}
    errors = {name: WRONG_MAIL[name] for name, ok in valid.items() if not ok}
    if errors:
        return render_account(400, errors, mail)
    weekly = mail["weekly_summary"] == "yes"
    days = None if mail["due_alert_days"] == "off" else int(mail["due_alert_days"])
    rt = runtime()
    with rt.transaction() as session:
        changed = subscriptions.change(session, rt, _attached(session), weekly_summary=weekly,
                                       due_alert_days=days)
    flash(_saved(weekly, days) if changed else "Nothing changed: your mail is as it was.")
    return redirect(url_for(".account"), 303)


def _saved(weekly: bool, days: int | None) -> str:
    summary = "the weekly summary every 7 days" if weekly else "no weekly summary"
    alerts = (f"due alerts {subscriptions.plural(days, 'day')} before the due date" if days
              else "no due alerts")
    return f"Your mail is saved: {summary}; {alerts}."


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
    return render_account(400, errors)


@bp.post("/account/recovery-codes")
@access.allow(access.EVERYONE)
def account_recovery_codes() -> Response:
    rt = runtime()
    try:
        with rt.transaction() as session:
            codes = accounts.renew_recovery_codes(session, rt, _attached(session),
                                                  str(request.form.get("password", "")))
    except OfficerError as exc:
        return render_account(400, {"password": str(exc)})
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
