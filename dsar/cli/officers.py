"""``dsar officers``: create (a one-time set-up link), list, disable, role.

The first admin is made here; admins manage the others in the console too.
Without ``--as`` an action is recorded as the operator's account
(``operator:<OS user>``); with ``--as EMAIL`` as that officer, who must be
an active admin.
"""

from __future__ import annotations

import json

import click
from sqlalchemy.orm import Session

from ..models import Officer, OfficerRole
from ..officers import accounts
from ..officers.accounts import OfficerError
from ..runtime import Runtime
from .base import actor, json_option, main, transaction

ADMIN = frozenset({OfficerRole.ADMIN})
ROLES = click.Choice([r.value for r in OfficerRole])
AS = click.option("--as", "as_email", default=None, metavar="EMAIL",
                  help="Act as this officer (an active admin); default: the operator account.")


def _actor(session: Session, rt: Runtime, as_email: str | None) -> str:
    if as_email is None:
        return actor()
    return accounts.actor_of(accounts.acting_officer(session, rt, as_email, ADMIN))


@main.group()
def officers() -> None:
    """Compliance officers: accounts for the console."""


@officers.command("create")
@click.argument("email")
@click.option("--role", type=ROLES, required=True)
@AS
def officers_create(email: str, role: str, as_email: str | None) -> None:
    """Invite an officer: prints their one-time set-up link."""
    try:
        with transaction() as (rt, session):
            invitation = accounts.create(session, rt, email, role,
                                         actor=_actor(session, rt, as_email))
    except OfficerError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"officer {invitation.officer_id} ({role}) invited. Give them this set-up link,")
    click.echo(f"valid until {invitation.expires_at:%Y-%m-%d %H:%M} UTC, used once:")
    click.echo(invitation.url)


@officers.command("invite")
@click.argument("email")
@AS
def officers_invite(email: str, as_email: str | None) -> None:
    """A fresh set-up link for an officer who has not set up yet."""
    try:
        with transaction() as (rt, session):
            officer = _one(session, rt, email)
            invitation = accounts.invite_again(session, rt, officer,
                                               actor=_actor(session, rt, as_email))
    except OfficerError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"set-up link for officer {invitation.officer_id}, valid until "
               f"{invitation.expires_at:%Y-%m-%d %H:%M} UTC:")
    click.echo(invitation.url)


@officers.command("list")
@json_option
def officers_list(as_json: bool) -> None:
    """Every officer: id, address, role, status."""
    with transaction() as (rt, session):
        rows = [{"id": o.id, "email": accounts.email_of(rt, o), "role": o.role,
                 "status": o.status, "created_at": o.created_at.isoformat()}
                for o in accounts.everyone(session)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no officers yet: dsar officers create EMAIL --role admin")
    for row in rows:
        click.echo(f"{row['id']}  {row['role']:<8}  {row['status']:<8}  {row['email']}")


@officers.command("disable")
@click.argument("email")
@AS
def officers_disable(email: str, as_email: str | None) -> None:
    """Disable an officer: their sessions end, they cannot sign in."""
    try:
        with transaction() as (rt, session):
            officer = _one(session, rt, email)
            accounts.disable(session, rt, officer, actor=_actor(session, rt, as_email))
    except OfficerError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"officer {officer.id} disabled")


@officers.command("role")
@click.argument("email")
@click.argument("role", type=ROLES)
@AS
def officers_role(email: str, role: str, as_email: str | None) -> None:
    """Give an officer another role: their sessions end."""
    try:
        with transaction() as (rt, session):
            officer = _one(session, rt, email)
            accounts.set_role(session, rt, officer, role, actor=_actor(session, rt, as_email))
    except OfficerError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"officer {officer.id} is now {role}")


def _one(session: Session, rt: Runtime, email: str) -> Officer:
    officer = accounts.find(session, rt, email)
    if officer is None:
        raise OfficerError("no officer with this email address")
    return officer
