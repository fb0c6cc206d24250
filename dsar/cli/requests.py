"""``dsar requests``: submit, inspect and decide requests (the officer's stand-in
until the console exists); each change commits once with its audit event."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from flask.cli import with_appcontext
from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..models import ExportBundle, OfficerRole
from ..runtime import Runtime, runtime
from ..workflow import downloads
from ..workflow.states import RequestKind
from .base import (
    actor,
    connectors_or_fail,
    get_request,
    json_option,
    main,
    print_result,
    transaction,
    validation_message,
)

# --- requests -------------------------------------------------------------------------

@main.group()
def requests() -> None:
    """Submit, inspect and decide requests."""


@requests.command("submit")
@click.option("--kind", type=click.Choice([k.value for k in RequestKind]), required=True)
@click.option("--email", required=True, help="The subject's email address.")
@click.option("--phone", default=None)
@click.option("--customer-id", default=None)
@click.option("--name", default=None)
@click.option("--message", default=None)
@click.option("--verified", is_flag=True,
              help="Identity already checked out of band: start at once.")
@json_option
@with_appcontext
def requests_submit(as_json: bool, verified: bool, **raw: Any) -> None:
    """Record a request received by another channel (letter, phone, email)."""
    from ..schemas.requests import SubmitInput
    from ..workflow import requests as flow

    try:
        data = SubmitInput().load({k: v for k, v in raw.items() if v is not None})
    except ValidationError as exc:
        raise click.UsageError(validation_message(exc)) from None
    with transaction() as (rt, session):
        if verified:
            connectors_or_fail(rt)
        request = flow.submit(session, rt, data["kind"], SubmitInput.identifiers(data),
                              name=data["name"], message=data["message"], actor=actor())
        if verified:
            flow.mark_verified(session, rt, request, actor=actor(), method="out-of-band")
        request_id, status = request.id, request.status
    print_result({"id": request_id, "status": status}, as_json, f"{request_id} {status}")


@requests.command("show")
@click.argument("request_id")
@json_option
@with_appcontext
def requests_show(request_id: str, as_json: bool) -> None:
    """One request with its tasks."""
    from ..schemas.requests import RequestOfficerView

    with transaction() as (rt, session):
        request = get_request(session, request_id)
        view = RequestOfficerView().dump(request)
        view["export"] = export_view(rt, downloads.bundle_of(session, request))
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    click.echo(f"{view['id']}  {view['kind']}  {view['status']}  due {view['due_at']}")
    if view["status_reason"]:
        click.echo(f"  reason: {view['status_reason']}")
    if (export := view["export"]) is not None:
        state = "available" if export["refusal"] is None else export["refusal"]
        click.echo(f"  export: {export['path']} ({export['size']} bytes, sha256 "
                   f"{export['sha256'][:12]}..., downloads {export['downloads']} of "
                   f"{export['max_downloads']}, link valid until {export['expires_at']}: "
                   f"{state})")
    for task in view["tasks"]:
        error = f"  ({task['last_error']})" if task["last_error"] else ""
        reclaims = f" reclaims={task['reclaims']}" if task["reclaims"] else ""
        click.echo(f"  {task['connector']:<20} {task['step']:<7} {task['status']:<10} "
                   f"records={task['records']} attempts={task['attempts']}{reclaims}{error}")
    for line in waiting_lines(view["waiting"]):
        click.echo(f"  {line}")


def export_view(rt: Runtime, bundle: ExportBundle | None) -> dict[str, Any] | None:
    """Where an access request's zip is and what is left of its link."""
    if bundle is None:
        return None
    state = downloads.availability(rt, bundle)
    return {"path": str(Path(rt.settings["EXPORT_DIR"]) / bundle.filename),
            "size": bundle.size, "sha256": bundle.sha256, "downloads": bundle.download_count,
            "max_downloads": int(rt.settings["EXPORT_MAX_DOWNLOADS"]),
            "expires_at": bundle.expires_at.isoformat() if bundle.expires_at else None,
            "refusal": state.refusal}


@requests.command("list")
@click.option("--status", default=None, help="Only requests in this state.")
@json_option
@with_appcontext
def requests_list(status: str | None, as_json: bool) -> None:
    """Requests, the oldest deadline first."""
    from ..models import Request
    from ..schemas.requests import RequestOfficerView

    with transaction() as (_rt, session):
        stmt = select(Request).order_by(Request.due_at)
        if status:
            stmt = stmt.where(Request.status == status)
        rows = RequestOfficerView(many=True, exclude=("tasks", "identifiers")).dump(
            session.scalars(stmt.options(selectinload(Request.tasks))))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['id']}  {row['kind']:<8} {row['status']:<17} due {row['due_at']}")
        for line in waiting_lines(row["waiting"]):
            click.echo(f"    {line}")


def waiting_lines(waiting: list[dict[str, Any]]) -> list[str]:
    """"waiting for store X since ..., next try at ..." per store being retried."""
    return [f"waiting for store {w['connector']} since {w['since']}, next try at "
            f"{w['next_try_at']}" for w in waiting]


#: who may decide a request with --as
REVIEWERS = frozenset({OfficerRole.REVIEWER, OfficerRole.ADMIN})
AS = click.option("--as", "as_email", default=None, metavar="EMAIL",
                  help="Act as this officer (an active reviewer or admin); default: the "
                       "operator account.")


def _decide(request_id: str, action: Callable[..., Any], as_email: str | None,
            show_due: bool = False, **kwargs: Any) -> None:
    """Run ``action`` on the request (locked) in one transaction, as the operator
    or, with ``--as``, as that officer (named by id in the trail); prints the
    request's status (and its due date: ``show_due``)."""
    from ..officers import accounts
    from ..workflow.extensions import Refused
    from ..workflow.states import IllegalTransition

    try:
        with transaction() as (rt, session):
            who = actor() if as_email is None else accounts.actor_of(
                accounts.acting_officer(session, rt, as_email, REVIEWERS))
            request = get_request(session, request_id, lock=True)
            action(session, rt, request, actor=who, **kwargs)
            status, due = request.status, request.due_at
    except (IllegalTransition, Refused, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{request_id} {status} due {due.isoformat()}" if show_due
               else f"{request_id} {status}")


@requests.command("approve")
@click.argument("request_id")
@click.option("--reason", default=None,
              help="Why, when the stored erasure preview failed for a store (needed then).")
@AS
@with_appcontext
def requests_approve(request_id: str, reason: str | None, as_email: str | None) -> None:
    """Approve an erasure awaiting review; it starts processing."""
    from ..workflow import requests as flow

    connectors_or_fail(runtime())
    _decide(request_id, flow.approve, as_email, reason=reason)


@requests.command("plan")
@click.argument("request_id")
@json_option
@with_appcontext
def requests_plan(request_id: str, as_json: bool) -> None:
    """Show what an erasure would delete, mask and keep, store by store,
    before approving it. Changes nothing in the stores."""
    from ..workflow.preview import preview_erasure

    connectors_or_fail(runtime())
    with transaction() as (rt, session):
        request = get_request(session, request_id)
        if request.kind != RequestKind.ERASURE:
            raise click.ClickException(f"{request_id} is an {request.kind} request")
        previews = preview_erasure(session, rt, request, actor=actor())
    if as_json:
        click.echo(json.dumps(previews, indent=2))
        return
    for entry in previews:
        counts = "  ".join(f"{k} {v}" for k, v in entry.get("summary", {}).items())
        click.echo(f"{entry['connector']:<20} {counts or entry.get('error') or entry.get('note')}")
        for group in entry.get("groups", []):
            detail = f"  ({group['detail']})" if group["detail"] else ""
            click.echo(f"  {group['collection']:<18} {group['action']:<6} "
                       f"{group['records']:>5}{detail}")


@requests.command("deny")
@click.argument("request_id")
@click.option("--reason", default=None, help="Why, in words the requester will read "
              "(after the --template's text, if any).")
@click.option("--template", default=None, metavar="KEY",
              help="A reason from the texts deny.reason.KEY (DSAR_TEXTS), e.g. legal_claims.")
@AS
@with_appcontext
def requests_deny(request_id: str, reason: str | None, template: str | None,
                  as_email: str | None) -> None:
    """Deny an erasure awaiting review."""
    from ..texts import deny_reasons
    from ..workflow import requests as flow

    templates = deny_reasons(runtime().texts)
    if template is not None and template not in templates:
        raise click.UsageError(f"--template: one of {', '.join(templates)}")
    words = " ".join(part for part in (templates.get(template or ""), (reason or "").strip())
                     if part)  # neither: the workflow says a denial needs a reason
    _decide(request_id, flow.deny, as_email, reason=words)


@requests.command("cancel")
@click.argument("request_id")
@click.option("--reason", required=True)
@AS
@with_appcontext
def requests_cancel(request_id: str, reason: str, as_email: str | None) -> None:
    """Cancel a request that has not ended."""
    from ..workflow import requests as flow

    _decide(request_id, flow.cancel, as_email, reason=reason)


@requests.command("retry")
@click.argument("request_id")
@AS
@with_appcontext
def requests_retry(request_id: str, as_email: str | None) -> None:
    """Run the failed tasks of a partially failed request again."""
    from ..workflow import requests as flow

    connectors_or_fail(runtime())
    _decide(request_id, flow.retry, as_email)


@requests.command("extend")
@click.argument("request_id")
@click.option("--months", type=click.IntRange(1, 2), required=True,
              help="Further months: 1 or 2 (GDPR Art. 12(3)).")
@click.option("--reason", required=True, help="Why, in words the requester will read.")
@AS
@with_appcontext
def requests_extend(request_id: str, months: int, reason: str, as_email: str | None) -> None:
    """Extend the deadline once, within the first month, by one or two months."""
    from ..workflow import requests as flow

    _decide(request_id, flow.extend, as_email, show_due=True, months=months, reason=reason)


@requests.command("pause")
@click.argument("request_id")
@click.option("--waiting-for", type=click.Choice(["identity", "clarification"]),
              required=True, help="What the requester was asked for.")
@click.option("--note", default=None, help="For officers: what was asked, and how.")
@AS
@with_appcontext
def requests_pause(request_id: str, waiting_for: str, note: str | None,
                   as_email: str | None) -> None:
    """Stop the clock while waiting for the requester (UK GDPR Art. 12A)."""
    from ..workflow import requests as flow

    _decide(request_id, flow.pause, as_email, waiting_for=waiting_for, note=note)


@requests.command("resume")
@click.argument("request_id")
@AS
@with_appcontext
def requests_resume(request_id: str, as_email: str | None) -> None:
    """Start the clock again: the due date moves by the time paused."""
    from ..workflow import requests as flow

    _decide(request_id, flow.resume, as_email, show_due=True)


@requests.command("process")
@click.option("--workers", type=int, default=None, help="Worker threads (default DSAR_WORKERS).")
@click.option("--timeout", type=float, default=3600.0, show_default=True,
              help="Give up waiting after this many seconds.")
@with_appcontext
def requests_process(workers: int | None, timeout: float) -> None:
    """Run all pending work (including retries as they fall due), then exit."""
    from ..executor import InProcessExecutor

    rt = runtime()
    connectors_or_fail(rt)
    with InProcessExecutor(rt, workers) as executor:
        held = executor.held_elsewhere()
        if held:
            click.echo(f"waiting for {len(held)} task(s) running under other workers "
                       "(taken over if their worker is gone):")
            for task in held:
                click.echo(f"  {task.request_id}  {task.connector} {task.step}  lease until "
                           f"{task.lease_expires_at.isoformat(timespec='seconds')}")
        idle = executor.wait_until_idle(timeout)
        while idle and executor.deliver_mail():  # mail the work queued (notices)
            pass
    if not idle:
        raise click.ClickException(f"work still pending after {timeout:.0f} s")
    click.echo("no pending work")
