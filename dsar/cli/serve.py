"""``dsar db upgrade``, ``dsar config``, ``dsar run``, ``dsar worker`` and ``dsar demo``."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import click
from flask import current_app
from flask.cli import with_appcontext

from ..runtime import Runtime, runtime
from .base import actor, connectors_or_fail, main

log = logging.getLogger(__name__)

# --- database -------------------------------------------------------------------------

@main.group()
def db() -> None:
    """The application database."""


@db.command("upgrade")
@with_appcontext
def db_upgrade() -> None:
    """Create or migrate the database to the current schema."""
    from .. import migrate

    migrate.upgrade(runtime().engine)
    click.echo("database is up to date")


# --- settings and serving ---------------------------------------------------------------

@main.command("config")
def config_help() -> None:
    """Every DSAR_* setting with its default and meaning."""
    from ..config import describe

    click.echo(describe())


@main.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True)
@with_appcontext
def run_command(host: str, port: int) -> None:
    """Serve the portal with the in-process executor (development server)."""
    from werkzeug.serving import run_simple

    from ..executor import InProcessExecutor

    rt = runtime()
    connectors_or_fail(rt)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    with InProcessExecutor(rt):  # not app.run(): under the flask CLI it returns at once
        run_simple(host, port, app, threaded=True)


@main.command("worker")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Worker threads (default DSAR_WORKERS).")
@click.option("--grace", type=float, default=30.0, show_default=True,
              help="On SIGTERM/SIGINT, seconds running tasks may take to finish before "
                   "they are asked to stop and handed back to other workers.")
@with_appcontext
def worker_command(workers: int | None, grace: float) -> None:
    """Run the workers as a long-running process (production: beside gunicorn
    serving wsgi.py; as many processes as you like). Stops on SIGTERM or
    SIGINT, finishing or handing back its tasks. With DSAR_EXECUTOR=celery it
    is a Celery worker (a pool of --workers threads) on DSAR_BROKER_URL."""
    from ..executor import InProcessExecutor

    rt = runtime()
    connectors_or_fail(rt)
    if rt.settings["EXECUTOR"] == "celery":  # a Celery worker, its pool and sweeper
        from ..celery_executor import run_worker

        run_worker(rt, workers or int(rt.settings["WORKERS"]), grace)
        rt.close()
        return
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("worker: %s received, stopping", signal.Signals(signum).name)
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    executor = InProcessExecutor(rt, workers).start()
    click.echo(f"dsar worker {executor.id}: {executor.workers} workers "
               f"({rt.engine.dialect.name} app database); SIGTERM stops it")
    while not stopping.wait(1.0):
        pass
    executor.stop(grace)
    rt.close()
    click.echo(f"dsar worker {executor.id}: stopped")


@main.command("demo")
@click.option("--force", is_flag=True, help="Delete the demo stores and seed them afresh.")
@click.option("--customers", type=click.IntRange(2, 500), default=8, show_default=True,
              help="How many demo customers to create.")
@with_appcontext
def demo_command(force: bool, customers: int) -> None:
    """Migrate the database and seed demo stores (CRM, mail, chat) with their
    connector file in the instance folder; existing stores are kept unless --force."""

    from .. import migrate
    from ..demo import DemoError, seed

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
    _demo_officer(rt)


#: the demo's console admin: invited by `dsar demo`, set up from the link it prints
DEMO_OFFICER = "officer@example.org"


def _demo_officer(rt: Runtime) -> None:
    """An admin for the console's tour, while no other officer exists; a new
    set-up link each run until it is set up."""
    from ..models import OfficerStatus
    from ..officers import accounts

    with rt.transaction() as session:
        officer = accounts.find(session, rt, DEMO_OFFICER)
        if officer is None and not accounts.everyone(session):
            invitation = accounts.create(session, rt, DEMO_OFFICER, "admin", actor=actor())
            said = f"set up the demo admin {DEMO_OFFICER} at"
        elif officer is not None and officer.status == OfficerStatus.INVITED:
            invitation = accounts.invite_again(session, rt, officer, actor=actor())
            said = f"a new set-up link for {DEMO_OFFICER}:"
        else:
            click.echo(f"console: {rt.settings['BASE_URL']}/console/ (dsar officers list)")
            return
    click.echo(f"console: {said} {invitation.url}")
