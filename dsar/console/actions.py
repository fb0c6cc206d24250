"""An officer's actions on a request, each behind a confirmation page.

The GOV.UK "check answers" pattern, for every action alike:

* ``GET /console/requests/<id>/<action>``: the form (an action without
  fields goes straight to the confirmation page);
* ``POST .../<action>``: the form checked (errors: 400 with the error
  summary), then the confirmation page restating what will happen, the
  values carried in hidden fields (``edit`` shows the form again);
* ``POST .../<action>/confirm``: the values checked again and the action done
  in one transaction with its audit event, which names the officer
  (``officer:<id>``); then back to the request's page (303) with a note.

A request whose state (or history: an extension is decided once) no longer
allows the action answers 409 with a page saying why, at any of the three
steps. Reviewers and admins act; auditors read (403). Every form has CSRF
(Flask-WTF, app-wide). The workflow (:mod:`dsar.workflow.requests`) keeps
the rules; this module asks it first only to say so before the officer
confirms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Response, abort, flash, redirect, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from ..models import Request, Task
from ..models.request import is_request_id
from ..runtime import Runtime, runtime
from ..texts import deny_reasons
from ..workflow import extensions as clock
from ..workflow import notices
from ..workflow import requests as flow
from ..workflow.extensions import Refused, WaitingFor
from ..workflow.states import IllegalTransition, RequestKind, Status, can_transition
from ..workflow.task_states import OPEN, TaskStatus
from . import access, bp
from .views import render

#: the longest reason or note an officer may write
MAX_TEXT = 2000
OTHER = "other"
WAITING = {WaitingFor.IDENTITY: "Proof of the requester's identity",
           WaitingFor.CLARIFICATION: "Clarification of what the requester asks for"}
WAITING_HINTS = {
    WaitingFor.IDENTITY: "You have asked for more than the emailed code proves (UK GDPR "
                         "Art. 12A; GDPR Art. 12(6)).",
    WaitingFor.CLARIFICATION: "The request is unclear or very wide and you have asked the "
                              "requester to say what they want."}


@dataclass
class Context:
    """What an action's steps read: the request (in the open transaction), the time."""

    rt: Runtime
    session: Session | None  # None: only the refusals, which read the row
    request: Request
    now: datetime

    @property
    def db(self) -> Session:
        if self.session is None:
            raise RuntimeError("this step reads the database: give the context a session")
        return self.session


Values = dict[str, str]
Errors = dict[str, str]


@dataclass(frozen=True)
class Action:
    name: str
    #: the h1 and the confirm button, e.g. "Approve the erasure"
    title: str
    #: the form's fields carried to the confirmation
    fields: tuple[str, ...]
    #: why the request's state forbids the action now, or None
    refusal: Callable[[Context], str | None]
    #: the form's values and their errors
    check: Callable[[Context, Mapping[str, str]], tuple[Values, Errors]]
    #: the confirmation page: (label, value) rows and what will happen
    restate: Callable[[Context, Values], tuple[list[tuple[str, str]], list[str]]]
    #: do it (in the transaction); returns the note for the request's page
    perform: Callable[[Context, Values, str], str]
    #: a red button: the action ends or refuses the request
    warning: bool = False


def _text(form: Mapping[str, str], name: str) -> str:
    """A field's text, trimmed, its line ends as Python writes them (a browser
    sends CRLF)."""
    return str(form.get(name, "")).replace("\r\n", "\n").strip()


def _long(values: Values, name: str, errors: Errors, label: str) -> None:
    if len(values.get(name, "")) > MAX_TEXT:
        errors[name] = f"{label} must be {MAX_TEXT:,} characters or fewer"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _status_refusal(ctx: Context, allowed: Callable[[str], bool], what: str) -> str | None:
    status = ctx.request.status
    if allowed(status):
        return None
    return f"This request is {status.replace('_', ' ')}: it cannot be {what} now."


# --- approve ----------------------------------------------------------------------------


def _review_refusal(what: str) -> Callable[[Context], str | None]:
    def refusal(ctx: Context) -> str | None:
        if ctx.request.kind != RequestKind.ERASURE:
            return f"This is an {ctx.request.kind} request: only an erasure is {what}."
        return _status_refusal(ctx, lambda s: s == Status.AWAITING_REVIEW, what)
    return refusal


def _approve_check(ctx: Context, form: Mapping[str, str]) -> tuple[Values, Errors]:
    values = {"reason": _text(form, "reason")}
    errors: Errors = {}
    failed = flow.failed_preview_stores(ctx.db, ctx.request)
    if failed and not values["reason"]:
        errors["reason"] = (f"The preview failed for {', '.join(failed)}: say why you approve "
                            "the erasure anyway")
    _long(values, "reason", errors, "The reason")
    return values, errors


def _approve_restate(ctx: Context, values: Values) -> tuple[list[tuple[str, str]], list[str]]:
    failed = flow.failed_preview_stores(ctx.db, ctx.request)
    rows = [("Decision", "Approve the erasure")]
    if failed:
        rows += [("Preview failed for", ", ".join(failed)),
                 ("Why you approve anyway", values["reason"])]
    stores = ", ".join(sorted(ctx.rt.connectors)) or "no store (none is configured)"
    happens = [f"The erasure starts at once in every store: {stores}.",
               "What the stores delete cannot be brought back."]
    if failed:
        happens.append("Your reason is kept on the request and in the audit trail.")
    return rows, happens


def _approve(ctx: Context, values: Values, actor: str) -> str:
    flow.approve(ctx.db, ctx.rt, ctx.request, actor=actor, reason=values["reason"] or None)
    return "Approved: the erasure has started."


def _mailed(ctx: Context, what: str) -> str:
    """What the decision's notice tells the requester (:mod:`dsar.workflow.notices`),
    or that nobody verified the address it would go to."""
    if notices.verified_address(ctx.rt, ctx.request) is None:
        return "We email the requester nothing: nobody verified the address."
    return f"We email the requester, at the address they verified, {what}."


# --- deny -------------------------------------------------------------------------------


def _deny_check(ctx: Context, form: Mapping[str, str]) -> tuple[Values, Errors]:
    values = {"template": _text(form, "template"), "details": _text(form, "details")}
    templates = deny_reasons(ctx.rt.texts)
    errors: Errors = {}
    if values["template"] not in (*templates, OTHER):
        errors["template"] = "Choose the reason for the denial"
    elif values["template"] == OTHER and not values["details"]:
        errors["details"] = "Write the reason the requester will read"
    _long(values, "details", errors, "The reason")
    return values, errors


def _deny_reason(ctx: Context, values: Values) -> str:
    template = deny_reasons(ctx.rt.texts).get(values["template"], "")
    return " ".join(part for part in (template, values["details"]) if part)


def _deny_restate(ctx: Context, values: Values) -> tuple[list[tuple[str, str]], list[str]]:
    return ([("Decision", "Deny the erasure"),
             ("Reason the requester reads", _deny_reason(ctx, values))],
            ["Nothing is deleted. The request ends: it cannot be approved afterwards.",
             "The requester sees the reason on their status page and through the API.",
             _mailed(ctx, "the reason")])


def _deny(ctx: Context, values: Values, actor: str) -> str:
    flow.deny(ctx.db, ctx.rt, ctx.request, actor=actor, reason=_deny_reason(ctx, values))
    return "Denied: the requester can read the reason."


# --- extend -----------------------------------------------------------------------------


def _extend_refusal(ctx: Context) -> str | None:
    r = ctx.request
    refusal = clock.extension_refusal(r.status, r.extended_at, r.due_at, ctx.now)
    return None if refusal is None else f"The deadline cannot be extended: {refusal}."


def _extend_check(ctx: Context, form: Mapping[str, str]) -> tuple[Values, Errors]:
    values = {"months": _text(form, "months"), "reason": _text(form, "reason")}
    errors: Errors = {}
    if values["months"] not in ("1", "2"):
        errors["months"] = "Choose one or two further months"
    if not values["reason"]:
        errors["reason"] = "Write why you need more time: the requester is told"
    _long(values, "reason", errors, "The reason")
    return values, errors


def _extend_restate(ctx: Context, values: Values) -> tuple[list[tuple[str, str]], list[str]]:
    months = int(values["months"])
    new_due = clock.extended_due(ctx.request.received_at, ctx.request.due_at, months)
    return ([("Extend by", f"{months} further month{'s' if months > 1 else ''}"),
             ("Due now", _when(ctx.request.due_at)), ("Due after", _when(new_due)),
             ("Reason the requester reads", values["reason"])],
            [f"The request is due on {_when(new_due)} instead of {_when(ctx.request.due_at)}.",
             "An extension is allowed once (GDPR Art. 12(3)): this request cannot be "
             "extended again.",
             "The requester sees the new date and your reason on their status page.",
             _mailed(ctx, "the new date and your reason")])


def _extend(ctx: Context, values: Values, actor: str) -> str:
    flow.extend(ctx.db, ctx.rt, ctx.request, actor=actor, months=int(values["months"]),
                reason=values["reason"])
    return f"Extended: the request is now due on {_when(ctx.request.due_at)}."


# --- pause and resume -------------------------------------------------------------------


def _pause_check(ctx: Context, form: Mapping[str, str]) -> tuple[Values, Errors]:
    values = {"waiting_for": _text(form, "waiting_for"), "note": _text(form, "note")}
    errors: Errors = {}
    if values["waiting_for"] not in tuple(WaitingFor):
        errors["waiting_for"] = "Choose what you are waiting for from the requester"
    _long(values, "note", errors, "The note")
    return values, errors


def _pause_restate(ctx: Context, values: Values) -> tuple[list[tuple[str, str]], list[str]]:
    rows = [("Waiting for", WAITING[WaitingFor(values["waiting_for"])])]
    if values["note"]:
        rows.append(("Note", values["note"]))
    return rows, [
        "The clock stops now. When you resume the request, its due date "
        f"({_when(ctx.request.due_at)}) moves by the time it was paused.",
        f"It returns to \u201c{ctx.request.status.replace('_', ' ')}\u201d when you resume it.",
        _mailed(ctx, "that we wait for their identity or a clarification (not your note)"),
        "Write to the requester yourself about exactly what you need."]


def _pause(ctx: Context, values: Values, actor: str) -> str:
    flow.pause(ctx.db, ctx.rt, ctx.request, actor=actor,
               waiting_for=values["waiting_for"], note=values["note"] or None)
    return "Paused: the clock has stopped. Resume the request when the requester answers."


def _no_fields(_ctx: Context, _form: Mapping[str, str]) -> tuple[Values, Errors]:
    return {}, {}


def _resume_restate(ctx: Context, _values: Values) -> tuple[list[tuple[str, str]], list[str]]:
    r = ctx.request
    since, back_to = r.paused_at or ctx.now, r.paused_from or ""
    paused = clock.paused_for(since, ctx.now)
    days = paused.days
    new_due = clock.resumed_due(r.due_at, since, ctx.now)
    return ([("Paused since", _when(since)),
             ("Paused for", f"{days} day{'s' if days != 1 else ''} "
                            f"{paused.seconds // 3600} h {paused.seconds % 3600 // 60} min"),
             ("Due now", _when(r.due_at)), ("Due after", _when(new_due))],
            [f"The clock starts again and the request returns to "
             f"\u201c{back_to.replace('_', ' ')}\u201d.",
             f"It is due on {_when(new_due)}: moved by the time it was paused.",
             _mailed(ctx, "the new date")])


def _resume(ctx: Context, _values: Values, actor: str) -> str:
    flow.resume(ctx.db, ctx.rt, ctx.request, actor=actor)
    return f"Resumed: the request is now due on {_when(ctx.request.due_at)}."


# --- retry and cancel -------------------------------------------------------------------


def _tasks(ctx: Context, statuses: tuple[str, ...]) -> list[Task]:
    return list(ctx.db.scalars(select(Task).where(
        Task.request_id == ctx.request.id, Task.status.in_(statuses))
        .order_by(Task.connector, Task.step)))


def _retry_restate(ctx: Context, _values: Values) -> tuple[list[tuple[str, str]], list[str]]:
    failed = _tasks(ctx, (TaskStatus.FAILED.value,))
    names = ", ".join(f"{t.connector} ({t.step})" for t in failed) or "none"
    return ([("Failed tasks", names)],
            [f"{len(failed)} failed task{'s' if len(failed) != 1 else ''} run again; the "
             "request is processing until they end."])


def _retry(ctx: Context, _values: Values, actor: str) -> str:
    count = flow.retry(ctx.db, ctx.rt, ctx.request, actor=actor)
    return f"Retrying {count} failed task{'s' if count != 1 else ''}."


def _cancel_check(ctx: Context, form: Mapping[str, str]) -> tuple[Values, Errors]:
    values = {"reason": _text(form, "reason")}
    errors: Errors = {}
    if not values["reason"]:
        errors["reason"] = "Write why the request is cancelled"
    _long(values, "reason", errors, "The reason")
    return values, errors


def _cancel_restate(ctx: Context, values: Values) -> tuple[list[tuple[str, str]], list[str]]:
    open_tasks = _tasks(ctx, tuple(s.value for s in OPEN))
    happens = ["The request ends: it cannot be resumed or retried afterwards."]
    if open_tasks:
        happens.append(f"{len(open_tasks)} task{'s' if len(open_tasks) != 1 else ''} not "
                       "finished yet stop: what a store already did stays done.")
    happens.append(_mailed(ctx, "that it was cancelled (not your reason)"))
    return [("Reason", values["reason"])], happens


def _cancel(ctx: Context, values: Values, actor: str) -> str:
    flow.cancel(ctx.db, ctx.rt, ctx.request, actor=actor, reason=values["reason"])
    return "Cancelled."


ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("approve", "Approve the erasure", ("reason",), _review_refusal("approved"),
           _approve_check, _approve_restate, _approve),
    Action("deny", "Deny the erasure", ("template", "details"), _review_refusal("denied"),
           _deny_check, _deny_restate, _deny, warning=True),
    Action("extend", "Extend the deadline", ("months", "reason"), _extend_refusal,
           _extend_check, _extend_restate, _extend),
    Action("pause", "Pause the clock", ("waiting_for", "note"),
           lambda ctx: _status_refusal(ctx, lambda s: can_transition(s, Status.PAUSED),
                                       "paused"),
           _pause_check, _pause_restate, _pause),
    Action("resume", "Resume the request", (),
           lambda ctx: _status_refusal(ctx, lambda s: s == Status.PAUSED, "resumed"),
           _no_fields, _resume_restate, _resume),
    Action("retry", "Retry the failed tasks", (),
           lambda ctx: _status_refusal(ctx, lambda s: s == Status.PARTIALLY_FAILED,
                                       "retried"),
           _no_fields, _retry_restate, _retry),
    Action("cancel", "Cancel the request", ("reason",),
           lambda ctx: _status_refusal(ctx, lambda s: can_transition(s, Status.CANCELLED),
                                       "cancelled"),
           _cancel_check, _cancel_restate, _cancel, warning=True),
)}


@bp.app_template_global("request_actions")
def available(req: Request, now: datetime) -> list[Action]:
    """The actions the signed-in officer may take on ``req`` now (for the
    request's page): none for an auditor, and only those its state allows."""
    officer = access.current()
    if officer.role not in access.REVIEWERS:
        return []
    ctx = Context(runtime(), None, req, now)
    return [a for a in ACTIONS.values() if a.refusal(ctx) is None]


# --- the three steps --------------------------------------------------------------------


def _refused(request_id: str, text: str) -> Response:
    return render("console_action_refused.html", 409, body=text, req_id=request_id)


def _form(action: Action, ctx: Context, values: Values, problems: Errors) -> Response:
    summary = [(name, text) for name, text in problems.items()]
    return render("console_action.html", 400 if problems else 200, action=action,
                  req=ctx.request, values=values, errors=problems, summary=summary,
                  context=_form_context(action, ctx))


def _form_context(action: Action, ctx: Context) -> dict[str, Any]:
    if action.name == "approve":
        return {"failed": flow.failed_preview_stores(ctx.db, ctx.request)}
    if action.name == "deny":
        return {"templates": deny_reasons(ctx.rt.texts), "other": OTHER}
    if action.name == "extend":
        r = ctx.request
        words = {1: "One further month", 2: "Two further months"}
        return {"choices": [(str(m), f"{words[m]}: due "
                             f"{_when(clock.extended_due(r.received_at, r.due_at, m))}")
                            for m in range(1, clock.MAX_EXTENSION_MONTHS + 1)]}
    if action.name == "pause":
        return {"waiting": WAITING, "hints": WAITING_HINTS}
    return {}


def _confirmation(action: Action, ctx: Context, values: Values) -> Response:
    rows, happens = action.restate(ctx, values)
    return render("console_action_confirm.html", action=action, req=ctx.request, rows=rows,
                  happens=happens, values=values)


def _step(name: str, request_id: str, step: str) -> Response | BaseResponse:
    action = ACTIONS[name]
    rt = runtime()
    officer = access.current()
    try:
        with rt.transaction() as session:
            if not is_request_id(request_id):
                abort(404)
            found = flow.get(session, request_id, lock=step == "confirm")
            ctx = Context(rt, session, found, rt.now())
            refusal = action.refusal(ctx)
            if refusal is not None:
                return _refused(request_id, refusal)
            if step == "form" and action.fields:
                return _form(action, ctx, {}, {})
            values, problems = action.check(ctx, request.form)
            if step == "edit" or problems:
                return _form(action, ctx, values, problems)
            if step != "confirm":
                return _confirmation(action, ctx, values)
            note = action.perform(ctx, values, officer.actor)
    except flow.UnknownRequest:
        abort(404)
    except (IllegalTransition, Refused) as exc:  # changed since the page was shown
        text = str(exc)
        return _refused(request_id, f"{text[:1].upper()}{text[1:]}.")
    flash(note)
    return redirect(url_for(".request_page", request_id=request_id), 303)


def _views(name: str) -> tuple[Callable[[str], Response | BaseResponse],
                               Callable[[str], Response | BaseResponse]]:
    def form(request_id: str) -> Response | BaseResponse:
        if request.method == "GET":
            return _step(name, request_id, "form")
        return _step(name, request_id, "edit" if "edit" in request.form else "check")

    def confirm(request_id: str) -> Response | BaseResponse:
        return _step(name, request_id, "confirm")

    return form, confirm


for _name in ACTIONS:
    _form_view, _confirm_view = _views(_name)
    bp.add_url_rule(f"/requests/<request_id>/{_name}", _name,
                    access.allow(access.REVIEWERS)(_form_view), methods=["GET", "POST"])
    bp.add_url_rule(f"/requests/<request_id>/{_name}/confirm", f"{_name}_confirm",
                    access.allow(access.REVIEWERS)(_confirm_view), methods=["POST"])
