"""The ``dsar`` command: database, requests, connectors, audit, run.

Until the officer console exists, ``dsar requests approve|deny`` act as the
officer. Every command that changes a request commits once, with its audit
event, and prints a one-line result (or JSON with ``--json``).
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext
from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, create_app
from .config import ConfigError
from .runtime import Runtime, runtime

F = TypeVar("F", bound=Callable[..., Any])


def _create_app() -> Flask:
    try:
        return create_app(load_connectors=False)
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None


def _actor() -> str:
    return f"operator:{getpass.getuser()}"


@contextmanager
def _transaction() -> Iterator[tuple[Runtime, Session]]:
    rt = runtime()
    with rt.transaction() as session:
        yield rt, session


def _connectors_or_fail(rt: Runtime) -> dict[str, Any]:
    try:
        return rt.connectors
    except ConfigError as exc:
        raise click.ClickException(f"connectors: {exc}") from None


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=False,
             add_version_option=False, load_dotenv=False, set_debug_flag=False)
@click.version_option(package_name="dsar-toolkit")
def main() -> None:
    """Answer GDPR data-subject requests: intake, connectors, export, erasure, audit."""


# --- database -------------------------------------------------------------------------

@main.group()
def db() -> None:
    """The application database."""


@db.command("upgrade")
@with_appcontext
def db_upgrade() -> None:
    """Create or migrate the database to the current schema."""
    from . import migrate

    migrate.upgrade(runtime().engine)
    click.echo("database is up to date")


# --- requests -------------------------------------------------------------------------

@main.group()
def requests() -> None:
    """Submit, inspect and decide requests."""


def _json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)


@requests.command("submit")
@click.option("--kind", type=click.Choice(["access", "erasure"]), required=True)
@click.option("--email", required=True, help="The subject's email address.")
@click.option("--phone", default=None)
@click.option("--customer-id", default=None)
@click.option("--name", default=None)
@click.option("--message", default=None)
@click.option("--verified", is_flag=True,
              help="Identity already checked out of band: start at once.")
@_json_option
@with_appcontext
def requests_submit(as_json: bool, verified: bool, **raw: Any) -> None:
    """Record a request received by another channel (letter, phone, email)."""
    from .schemas.requests import SubmitInput
    from .workflow import requests as flow

    try:
        data = SubmitInput().load({k: v for k, v in raw.items() if v is not None})
    except ValidationError as exc:
        raise click.UsageError(_messages(exc)) from None
    with _transaction() as (rt, session):
        if verified:
            _connectors_or_fail(rt)
        request = flow.submit(session, rt, data["kind"], SubmitInput.identifiers(data),
                              name=data["name"], message=data["message"], actor=_actor())
        if verified:
            flow.mark_verified(session, rt, request, actor=_actor(), method="out-of-band")
        request_id, status = request.id, request.status
    _print({"id": request_id, "status": status}, as_json, f"{request_id} {status}")


@requests.command("show")
@click.argument("request_id")
@_json_option
@with_appcontext
def requests_show(request_id: str, as_json: bool) -> None:
    """One request with its tasks."""
    from .schemas.requests import RequestOfficerView

    with _transaction() as (_rt, session):
        view = RequestOfficerView().dump(_get(session, request_id))
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    click.echo(f"{view['id']}  {view['kind']}  {view['status']}  due {view['due_at']}")
    if view["status_reason"]:
        click.echo(f"  reason: {view['status_reason']}")
    for task in view["tasks"]:
        error = f"  ({task['last_error']})" if task["last_error"] else ""
        click.echo(f"  {task['connector']:<20} {task['step']:<7} {task['status']:<10} "
                   f"records={task['records']} attempts={task['attempts']}{error}")


@requests.command("list")
@click.option("--status", default=None, help="Only requests in this state.")
@_json_option
@with_appcontext
def requests_list(status: str | None, as_json: bool) -> None:
    """Requests, the oldest deadline first."""
    from .models import Request
    from .schemas.requests import RequestOfficerView

    with _transaction() as (_rt, session):
        stmt = select(Request).order_by(Request.due_at)
        if status:
            stmt = stmt.where(Request.status == status)
        rows = RequestOfficerView(many=True, exclude=("tasks", "identifiers")).dump(
            session.scalars(stmt))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['id']}  {row['kind']:<8} {row['status']:<17} due {row['due_at']}")


def _decide(request_id: str, action: Callable[..., Any], **kwargs: Any) -> None:
    from .workflow.states import IllegalTransition

    try:
        with _transaction() as (rt, session):
            request = _get(session, request_id, lock=True)
            action(session, rt, request, actor=_actor(), **kwargs)
            status = request.status
    except (IllegalTransition, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{request_id} {status}")


@requests.command("approve")
@click.argument("request_id")
@with_appcontext
def requests_approve(request_id: str) -> None:
    """Approve an erasure awaiting review; it starts processing."""
    from .workflow import requests as flow

    _connectors_or_fail(runtime())
    _decide(request_id, flow.approve)


@requests.command("plan")
@click.argument("request_id")
@_json_option
@with_appcontext
def requests_plan(request_id: str, as_json: bool) -> None:
    """Show what an erasure would delete, mask and keep, store by store,
    before approving it. Changes nothing in the stores."""
    from .workflow.preview import preview_erasure

    rt = runtime()
    _connectors_or_fail(rt)
    with _transaction() as (rt, session):
        request = _get(session, request_id)
        if request.kind != "erasure":
            raise click.ClickException(f"{request_id} is an {request.kind} request")
        previews = preview_erasure(session, rt, request, actor=_actor())
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
@click.option("--reason", required=True, help="Why, in words the requester will read.")
@with_appcontext
def requests_deny(request_id: str, reason: str) -> None:
    """Deny an erasure awaiting review."""
    from .workflow import requests as flow

    _decide(request_id, flow.deny, reason=reason)


@requests.command("cancel")
@click.argument("request_id")
@click.option("--reason", required=True)
@with_appcontext
def requests_cancel(request_id: str, reason: str) -> None:
    """Cancel a request that has not ended."""
    from .workflow import requests as flow

    _decide(request_id, flow.cancel, reason=reason)


@requests.command("retry")
@click.argument("request_id")
@with_appcontext
def requests_retry(request_id: str) -> None:
    """Run the failed tasks of a partially failed request again."""
    from .workflow import requests as flow

    _connectors_or_fail(runtime())
    _decide(request_id, flow.retry)


@requests.command("process")
@click.option("--workers", type=int, default=None, help="Worker threads (default DSAR_WORKERS).")
@click.option("--timeout", type=float, default=3600.0, show_default=True,
              help="Give up waiting after this many seconds.")
@with_appcontext
def requests_process(workers: int | None, timeout: float) -> None:
    """Run all pending work (including retries as they fall due), then exit."""
    from .executor import InProcessExecutor

    rt = runtime()
    _connectors_or_fail(rt)
    with InProcessExecutor(rt, workers) as executor:
        idle = executor.wait_until_idle(timeout)
    if not idle:
        raise click.ClickException(f"work still pending after {timeout:.0f} s")
    click.echo("no pending work")


def _get(session: Session, request_id: str, *, lock: bool = False) -> Any:
    from .workflow.requests import UnknownRequest, get

    try:
        return get(session, request_id, lock=lock)
    except UnknownRequest:
        raise click.ClickException(f"no request {request_id}") from None


# --- connectors -----------------------------------------------------------------------

@main.group()
def connectors() -> None:
    """Installed connector types and configured instances."""


@connectors.command("list")
@with_appcontext
def connectors_list() -> None:
    """Installed types and the instances in the connector file."""
    from .registry import available_types

    click.echo("installed types: " + ", ".join(sorted(available_types())))
    for name, connector in _connectors_or_fail(runtime()).items():
        caps = ",".join(sorted(c.value for c in connector.capabilities))
        kinds = ",".join(sorted(connector.identity_kinds))
        click.echo(f"{name:<20} {type(connector).__name__:<24} {caps:<12} {kinds}")


@connectors.command("check")
@with_appcontext
def connectors_check() -> None:
    """Check every configured connector; non-zero exit if one is not ok."""
    failed = 0
    configured = _connectors_or_fail(runtime())
    if not configured:
        raise click.ClickException("no connectors configured (DSAR_CONNECTORS)")
    for name, connector in configured.items():
        try:
            result = connector.check()
            ok, message = result.ok, result.message
        except Exception as exc:  # check() must not raise; report it as not ok
            ok, message = False, f"check raised {type(exc).__name__}"
        failed += not ok
        click.echo(f"{name:<20} {'ok' if ok else 'FAILED':<7} {message}")
    if failed:
        sys.exit(1)


@connectors.command("new")
@click.argument("name")
@click.option("--directory", type=click.Path(file_okay=False, path_type=Path), default=".",
              show_default=True, help="Where to create the package folder.")
def connectors_new(name: str, directory: Path) -> None:
    """Write a working connector package to start from (entry point, class, tests)."""
    from .scaffold import ScaffoldError, new_connector

    try:
        target = new_connector(name, directory)
    except ScaffoldError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {target}\nnext: pip install -e {target} && pytest {target}")


# --- audit ----------------------------------------------------------------------------

@main.group("audit")
def audit_group() -> None:
    """The tamper-evident audit trail."""


@audit_group.command("verify")
@with_appcontext
def audit_verify() -> None:
    """Check every event's link, hash and seal, and the sealed head."""
    with _transaction() as (rt, session):
        result = audit.verify(session, rt.crypto)
    if result.ok:
        click.echo(f"audit chain intact: {result.checked} events")
        return
    where = f"event {result.bad_seq}" if result.bad_seq else "the head"
    click.echo(f"audit chain BROKEN at {where}: {result.problem} "
               f"({result.checked} events before it are intact)", err=True)
    sys.exit(1)


@audit_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True)
@click.option("--output", type=click.File("w", encoding="utf-8"), default="-")
@with_appcontext
def audit_export(fmt: str, output: Any) -> None:
    """Write the whole chain, with hashes and seals, for offline review."""
    with _transaction() as (_rt, session):
        count = audit.export(session, output, fmt)
    click.echo(f"{count} events exported", err=True)


# --- settings and serving ---------------------------------------------------------------

@main.command("config")
def config_help() -> None:
    """Every DSAR_* setting with its default and meaning."""
    from .config import describe

    click.echo(describe())


@main.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True)
@with_appcontext
def run_command(host: str, port: int) -> None:
    """Serve the portal with the in-process executor (development server)."""
    from werkzeug.serving import run_simple

    from .executor import InProcessExecutor

    rt = runtime()
    _connectors_or_fail(rt)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    with InProcessExecutor(rt):  # not app.run(): under the flask CLI it returns at once
        run_simple(host, port, app, threaded=True)


@main.command("demo")
@click.option("--force", is_flag=True, help="Delete the demo stores and seed them afresh.")
@click.option("--customers", type=click.IntRange(2, 500), default=8, show_default=True,
              help="How many demo customers to create.")
@with_appcontext
def demo_command(force: bool, customers: int) -> None:
    """Migrate the database and seed demo stores (CRM, mail, chat) with their
    connector file in the instance folder; existing stores are kept unless --force."""

    from . import migrate
    from .demo import DemoError, seed

    rt = runtime()
    if rt.settings["ENV"] == "production":
        raise click.ClickException("dsar demo is for development (DSAR_ENV is production)")
    migrate.upgrade(rt.engine)
    try:
        info = seed(Path(current_app.instance_path), customers=customers, force=force)
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None
    configured = rt.settings.get("CONNECTORS")
    if not configured:  # the file did not exist when the app started: use it from now on
        rt.settings["CONNECTORS"] = current_app.config["CONNECTORS"] = str(info.connector_file)
    state = "seeded" if info.seeded else "already there, left as they are (--force re-seeds)"
    click.echo(f"database is up to date\ndemo stores {state}:")
    for name, path in (("crm", info.crm), ("mail", info.mail), ("chat", info.chat)):
        click.echo(f"  {name:<5} {path}")
    click.echo(f"connector file: {info.connector_file} (try: dsar connectors check)")
    if configured and Path(configured).resolve() != info.connector_file.resolve():
        click.echo(f"  note: DSAR_CONNECTORS names {configured}; unset it to use the demo")
    click.echo(f"{len(info.emails)} demo customers, in all three stores; try:")
    for email in info.emails[:3]:
        click.echo(f"  {email}")
    click.echo(f"staff (mail and chat only): {', '.join(info.staff)}")
    if rt.settings.get("SMTP_URL"):
        click.echo("verification emails are sent through DSAR_SMTP_URL")
    else:
        click.echo(f"verification emails land in {rt.settings['OUTBOX_DIR']}/ (no SMTP)")


def _messages(exc: ValidationError) -> str:
    messages = exc.messages
    if isinstance(messages, dict):
        return "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}"
                         for k, v in messages.items())
    return str(messages)


def _print(data: dict[str, Any], as_json: bool, text: str) -> None:
    click.echo(json.dumps(data) if as_json else text)
