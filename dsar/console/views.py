"""Console views: signing in and out, setting an account up (the queue and
the request pages: :mod:`.request_views`).

Each route declares its roles (:mod:`.access`); forms carry CSRF tokens
(Flask-WTF, app-wide); every change is one transaction with its audit event.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import segno
from flask import Response, flash, make_response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from .. import audit
from ..extensions import client_address
from ..officers import accounts, factors, sessions, signin
from ..officers.accounts import OfficerError
from ..runtime import runtime
from . import access, bp

ISSUER = "dsar"


def render(template: str, status: int = 200, **context: Any) -> Response:
    return make_response(render_template(template, **context), status)


#: what a sign-in form left empty is told
MISSING = {"email": "Enter your email address", "password": "Enter your password",
           "code": "Enter the code from your authenticator app, or a recovery code"}
#: what the set-up form is told
SETUP = {"secret": "The page was changed: scan the new QR code",
         "password": "Choose a password", "confirm": "The two passwords are not the same"}


def _summary(errors: dict[str, str]) -> list[tuple[str, str]]:
    return list(errors.items())


# --- signing in and out -----------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """Only a console page of this site: never another host (an open redirect)."""
    if target and target.startswith("/console/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and "\\" not in target:
            return target
    return url_for(".queue")


@bp.route("/sign-in", methods=["GET", "POST"])
@access.public
def sign_in() -> Response | BaseResponse:
    next_page = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return render("console_signin.html", values={}, errors={}, summary=[], next=next_page)
    values = {name: str(request.form.get(name, "")).strip() for name in ("email", "code")}
    password = str(request.form.get("password", ""))
    given = {**values, "password": password}
    errors = {name: text for name, text in MISSING.items() if not given[name]}
    if errors:
        return render("console_signin.html", 400, values=values, errors=errors,
                      summary=_summary(errors), next=next_page)
    result = signin.sign_in(runtime(), values["email"], password, values["code"],
                            client_address())
    if result.outcome == signin.Outcome.THROTTLED:
        text = (f"Too many failed sign-ins. Wait {result.retry_after} seconds, "
                "then try again.")
        response = render("console_signin.html", 429, values=values, errors={},
                          summary=[("email", text)], next=next_page)
        response.headers["Retry-After"] = str(result.retry_after)
        return response
    if result.outcome == signin.Outcome.REFUSED or result.token is None:
        text = "The email address, password or code is not right"
        return render("console_signin.html", 401, values={"email": values["email"]},
                      errors={"email": text}, summary=[("email", text)], next=next_page)
    if result.recovery_left is not None:
        flash(f"You signed in with a recovery code: {result.recovery_left} left. "
              "Ask an admin for new codes before they run out.")
    signed = redirect(next_page, 303)
    access.remember(signed, result.token)
    return signed


@bp.post("/sign-out")
@access.allow(access.EVERYONE)
def sign_out() -> BaseResponse:
    rt = runtime()
    token = request.cookies.get(access.COOKIE, "")
    with rt.transaction() as session:
        officer_id = sessions.end(session, rt, token)
        if officer_id is not None:
            audit.record(session, rt.crypto, "officer.signed_out", actor=f"officer:{officer_id}",
                         details={"officer": officer_id})
    response = redirect(url_for(".sign_in"), 303)
    access.forget(response)
    return response


# --- setting an account up --------------------------------------------------------------


@bp.route("/setup/<token>", methods=["GET", "POST"])
@access.public
def setup(token: str) -> Response:
    rt = runtime()
    with rt.transaction() as session:
        officer = accounts.by_setup_link(session, rt, token)
        if officer is None:
            return render("console_message.html", 404, title="This set-up link does not work",
                          body="It has expired, or it was used already. Ask an admin for a "
                               "new one (dsar officers invite EMAIL).")
        email = accounts.email_of(rt, officer)
        if request.method == "GET":
            return _setup_page(token, email, factors.new_totp_secret(), {})
        secret = str(request.form.get("secret", ""))
        password = str(request.form.get("password", ""))
        errors = _setup_errors(secret, password, str(request.form.get("confirm", "")))
        if not errors:
            try:
                codes = accounts.set_up(session, rt, officer, password, secret,
                                        str(request.form.get("code", "")))
            except OfficerError as exc:
                field = "code" if "code" in str(exc) else "password"
                errors[field] = str(exc)
            else:
                return render("console_codes.html", codes=codes)
    if "secret" in errors:  # not the secret this page gave: a fresh one
        secret = factors.new_totp_secret()
    return _setup_page(token, email, secret, errors, status=400)


def _setup_errors(secret: str, password: str, confirm: str) -> dict[str, str]:
    wrong = {"secret": len(secret) != 32 or not secret.isalnum(), "password": not password,
             "confirm": bool(password) and password != confirm}
    return {name: SETUP[name] for name, is_wrong in wrong.items() if is_wrong}


def _setup_page(token: str, email: str, secret: str, errors: dict[str, str],
                status: int = 200) -> Response:
    uri = factors.totp_uri(secret, email, ISSUER)
    qr = segno.make(uri, error="m").svg_inline(scale=4, title="QR code for your authenticator app")
    spaced = " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
    return render("console_setup.html", status, token=token, email=email, secret=secret,
                  spaced=spaced, qr=qr, errors=errors, summary=_summary(errors))
