"""Who may use a console route: the signed-in officer and the roles each
route declares.

A route says :func:`allow` (the roles that may use it) or :func:`public`
(the sign-in and set-up pages). :func:`check` runs before every console
view: no declaration is a refusal (500, logged: a programming error, never
an open door); a declared route without a live session sends the browser to
sign in; a role not allowed gets 403. The session is a server-side row
(:mod:`dsar.officers.sessions`); the cookie, ``dsar_console``, is
host-only, HttpOnly, SameSite=Strict and scoped to ``/console``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Response, abort, current_app, g, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from ..models import OfficerRole
from ..officers import accounts, sessions
from ..runtime import runtime

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

COOKIE = "dsar_console"
_ROLES = "_console_roles"
#: a route anyone may open (signing in, setting up)
PUBLIC: frozenset[OfficerRole] = frozenset()
EVERYONE = frozenset(OfficerRole)
REVIEWERS = frozenset({OfficerRole.REVIEWER, OfficerRole.ADMIN})
ADMINS = frozenset({OfficerRole.ADMIN})


@dataclass(frozen=True)
class SignedIn:
    """The officer of this request: what views need, never the address in logs."""

    id: str
    role: OfficerRole
    email: str

    @property
    def actor(self) -> str:
        return f"officer:{self.id}"


def allow(roles: frozenset[OfficerRole]) -> Callable[[F], F]:
    """Declare the roles that may use the decorated route."""

    def declare(view: F) -> F:
        setattr(view, _ROLES, frozenset(roles))
        return view

    return declare


def public(view: F) -> F:
    setattr(view, _ROLES, PUBLIC)
    return view


def declared_roles(view: Callable[..., Any]) -> frozenset[OfficerRole] | None:
    roles: frozenset[OfficerRole] | None = getattr(view, _ROLES, None)
    return roles


def check() -> BaseResponse | None:
    """Before every console view: see the module's docstring."""
    if request.endpoint == "console.static":
        return None
    view = current_app.view_functions.get(request.endpoint or "")
    roles = declared_roles(view) if view is not None else None
    if roles is None:
        log.error("console route %s declares no roles: refused", request.endpoint)
        abort(500)
    if roles == PUBLIC:
        return None
    officer = signed_in()
    if officer is None:
        target = request.full_path if request.method == "GET" else url_for(".queue")
        return redirect(url_for(".sign_in", next=target.rstrip("?")), 303)
    g.console_officer = officer  # also for the 403 page: its header can sign out
    if officer.role not in roles:
        abort(403)
    return None


def signed_in() -> SignedIn | None:
    """The officer whose live session the cookie names, if any."""
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 100:
        return None
    rt = runtime()
    with rt.transaction() as session:
        officer = sessions.resolve(session, rt, token)
        if officer is None:
            return None
        return SignedIn(officer.id, OfficerRole(officer.role), accounts.email_of(rt, officer))


def current() -> SignedIn:
    officer: SignedIn = g.console_officer
    return officer


def remember(response: Response | BaseResponse, token: str) -> None:
    rt = runtime()
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/console",
                        secure=bool(rt.settings["HTTPS"]))


def forget(response: Response | BaseResponse) -> None:
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="Strict")
