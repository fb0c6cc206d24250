"""The ``dsar`` command group and the helpers its commands share."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from flask import Flask
from flask.cli import FlaskGroup
from marshmallow import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from .. import create_app
from ..config import ConfigError
from ..database import is_schema_missing
from ..runtime import Runtime, runtime

F = TypeVar("F", bound=Callable[..., Any])


def _create_app() -> Flask:
    try:
        return create_app(load_connectors=False)
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None


def actor() -> str:
    return f"operator:{getpass.getuser()}"


@contextmanager
def transaction() -> Iterator[tuple[Runtime, Session]]:
    rt = runtime()
    with rt.transaction() as session:
        yield rt, session


def connectors_or_fail(rt: Runtime) -> dict[str, Any]:
    try:
        return rt.connectors
    except ConfigError as exc:
        raise click.ClickException(f"connectors: {exc}") from None


class _Group(FlaskGroup):
    """The ``dsar`` group: a database nobody upgraded says what to run, not a
    traceback of SQL."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DBAPIError as exc:
            if not is_schema_missing(exc):
                raise
            raise click.ClickException(
                "the app database (DSAR_DATABASE_URL) has no dsar tables yet: "
                "run `dsar db upgrade` first") from None


@click.group(cls=_Group, create_app=_create_app, add_default_commands=False,
             add_version_option=False, load_dotenv=False, set_debug_flag=False)
@click.version_option(package_name="dsar-toolkit")
def main() -> None:
    """Answer GDPR data-subject requests: intake, connectors, export, erasure, audit."""



def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)


def get_request(session: Session, request_id: str, *, lock: bool = False) -> Any:
    from ..workflow.requests import UnknownRequest, get

    try:
        return get(session, request_id, lock=lock)
    except UnknownRequest:
        raise click.ClickException(f"no request {request_id}") from None


def validation_message(exc: ValidationError) -> str:
    messages = exc.messages
    if isinstance(messages, dict):
        return "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}"
                         for k, v in messages.items())
    return str(messages)


def print_result(data: dict[str, Any], as_json: bool, text: str) -> None:
    click.echo(json.dumps(data) if as_json else text)
