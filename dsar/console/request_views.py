"""The queue (filters, search, pages) and a request's page: its timeline,
its tasks, its identifiers masked, and for an erasure the stored preview.

Reading a page runs nothing and records nothing: the preview shown is the one
a worker stored (:mod:`dsar.workflow.preview`); "compute it again" (reviewers
and admins, CSRF) asks the worker for a new one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Response, abort, flash, redirect, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from ..models import AuditEvent, ErasurePreview, Request, SubjectIdentifier, Task
from ..models.request import is_request_id
from ..runtime import runtime
from ..workflow import preview
from ..workflow.extensions import WaitingFor
from ..workflow.states import RequestKind, Status
from ..workflow.task_states import TaskStatus
from . import access, bp
from . import queue as q
from .actions import WAITING
from .views import render

MASK = "\u2022\u2022\u2022"


# --- the queue --------------------------------------------------------------------------


@bp.get("/")
@access.allow(access.EVERYONE)
def queue() -> Response:
    filters, errors = q.parse(request.args)
    rt = runtime()
    with rt.transaction() as session:
        page = q.page_of(session, filters, rt.now()) if not errors else q.Page(filters)
    if not errors and filters.page > page.pages:
        errors["page"] = (f"There is no page {filters.page}: these requests fill "
                          f"{page.pages} page{'s' if page.pages != 1 else ''}")
        page = q.Page(filters)
    return _queue_page(page, errors)


@bp.post("/search")
@access.allow(access.EVERYONE)
def search() -> Response | BaseResponse:
    """A search form's answer: a redirect to the queue filtered by the request
    id or by the keyed hash of the email address (never the address)."""
    filters, errors = q.parse(request.form)
    target = q.search_target(runtime().crypto, str(request.form.get("q", "")))
    if target is None:
        errors["q"] = q.WRONG["q"]
    if errors or target is None:
        return _queue_page(q.Page(filters), errors)
    args: dict[str, Any] = {**q.without_page(filters).args(request="", subject=""), **target}
    return redirect(url_for(".queue", **args), 303)


def _queue_page(page: q.Page, errors: dict[str, str]) -> Response:
    order = ("q", "status", "kind", "due", "page", "request", "subject")
    summary = [(name if name in ("q", "status", "kind", "due") else "", errors[name])
               for name in order if name in errors]
    return render("console_queue.html", 400 if errors else 200, page=page, errors=errors,
                  summary=summary, statuses=q.status_choices(), kinds=q.kind_choices(),
                  dues=q.due_choices(), filters=page.filters)


# --- a request's page -------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    seq: int
    occurred_at: datetime
    actor: str
    action: str
    details: list[tuple[str, str]]


@dataclass(frozen=True)
class Identifier:
    kind: str
    masked: str
    source: str
    added_at: datetime


@bp.get("/requests/<request_id>")
@access.allow(access.EVERYONE)
def request_page(request_id: str) -> Response:
    rt = runtime()
    with rt.transaction() as session:
        found = session.get(Request, request_id) if is_request_id(request_id) else None
        if found is None:
            abort(404)
        events = [Event(e.seq, e.occurred_at, e.actor, e.action, _details(e.details))
                  for e in session.scalars(select(AuditEvent).where(
                      AuditEvent.request_id == request_id).order_by(AuditEvent.seq))]
        tasks = list(session.scalars(select(Task).where(Task.request_id == request_id)
                                     .order_by(Task.step, Task.connector)))
        identifiers = [Identifier(i.kind, mask(i.kind, rt.crypto.decrypt_text(
            i.value_ct, f"identifier:{i.kind}")), i.source, i.added_at)
            for i in session.scalars(select(SubjectIdentifier).where(
                SubjectIdentifier.request_id == request_id).order_by(SubjectIdentifier.id))]
        stored = session.get(ErasurePreview, request_id)
        view = _preview_view(stored) if found.kind == RequestKind.ERASURE else None
        now = rt.now()
        session.expunge_all()
    return render("console_request.html", req=found, events=events, tasks=tasks,
                  identifiers=identifiers, preview=view, now=now,
                  days_left=(found.due_at - now).days,
                  can_preview=(found.kind == RequestKind.ERASURE
                               and found.status == Status.AWAITING_REVIEW),
                  waiting=TaskStatus.PENDING.value,
                  paused_for=_waiting_for(found.paused_for))


def _waiting_for(value: str | None) -> str | None:
    """What a paused request waits for, in the officer's words."""
    return WAITING[WaitingFor(value)] if value in tuple(WaitingFor) else value


@bp.post("/requests/<request_id>/preview")
@access.allow(access.REVIEWERS)
def preview_again(request_id: str) -> BaseResponse:
    """An officer asks for the erasure preview to be computed again."""
    rt = runtime()
    officer = access.current()
    with rt.transaction() as session:
        found = session.get(Request, request_id) if is_request_id(request_id) else None
        if found is None:
            abort(404)
        try:
            preview.ask_again(session, rt, found, actor=officer.actor)
        except ValueError:
            abort(409)
    flash("A new preview has been asked for. A worker computes it within a few minutes: "
          "reload this page to see it.")
    return redirect(url_for(".request_page", request_id=request_id) + "#preview", 303)


def _preview_view(stored: ErasurePreview | None) -> dict[str, Any]:
    """What the page shows of the stored preview (nothing computed here)."""
    if stored is None:
        return {"stores": None, "computed_at": None, "pending": True}
    return {"stores": json.loads(stored.stores) if stored.stores else None,
            "computed_at": stored.computed_at, "identifiers": stored.identifiers,
            "requested_at": stored.requested_at, "requested_by": stored.requested_by,
            "pending": stored.computed_at is None or stored.computed_at < stored.requested_at}


def _details(raw: str) -> list[tuple[str, str]]:
    """An event's details as (name, short text) pairs, for the timeline."""
    try:
        details = json.loads(raw)
    except ValueError:
        return [("details", raw[:200])]
    if not isinstance(details, dict):
        return [("details", str(details)[:200])]
    pairs = []
    for name, value in sorted(details.items()):
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        pairs.append((str(name), text if len(text) <= 200 else text[:199] + "\u2026"))
    return pairs


def mask(kind: str, value: str) -> str:
    """Enough of an identifier to tell two apart, never the whole of it:
    ``a•••@e•••.org``, ``+•••42``, ``c•••7``."""
    if kind == "email" and "@" in value:
        local, _, domain = value.rpartition("@")
        name, dot, tld = domain.rpartition(".")
        masked_domain = f"{name[:1]}{MASK}.{tld}" if dot and name else f"{domain[:1]}{MASK}"
        return f"{local[:1]}{MASK}@{masked_domain}"
    if kind == "phone":
        digits = "".join(ch for ch in value if ch.isdigit())
        end = digits[-2:] if len(digits) > 5 else ""
        return f"{'+' if value.startswith('+') else ''}{MASK}{end}"
    if len(value) > 5:
        return f"{value[:1]}{MASK}{value[-1:]}"
    return MASK
