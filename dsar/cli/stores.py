"""``dsar connectors``: installed types, configured instances, health, new packages.

Nothing here prints a secret: a configuration is shown through
:func:`dsar.connector.masked_config`, and every text that may quote one (a
``check()`` message) goes through :meth:`dsar.connector.Connector.redacted`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask.cli import with_appcontext

from ..connector import masked_config
from ..runtime import runtime
from .base import connectors_or_fail, main

# --- connectors -----------------------------------------------------------------------

@main.group()
def connectors() -> None:
    """Installed connector types and configured instances."""


@connectors.command("list")
@click.option("--config", "show_config", is_flag=True,
              help="Also print each instance's configuration (secrets masked).")
@with_appcontext
def connectors_list(show_config: bool) -> None:
    """Installed types and the instances in the connector file (with the label
    requesters read, when one is given)."""
    from ..registry import available_types

    click.echo("installed types: " + ", ".join(sorted(available_types())))
    for name, connector in connectors_or_fail(runtime()).items():
        caps = ",".join(sorted(c.value for c in connector.capabilities))
        kinds = ",".join(sorted(connector.identity_kinds))
        click.echo(f"{name:<20} {type(connector).__name__:<24} {caps:<12} {kinds}")
        if connector.label is not None:
            click.echo(f"  requesters read: {connector.label}")
        if show_config:
            shown = masked_config(type(connector).config_schema, connector.config)
            click.echo("  " + connector.redacted(json.dumps(shown, default=str)))


@connectors.command("check")
@with_appcontext
def connectors_check() -> None:
    """Check every configured connector; non-zero exit if one is not ok."""
    from ..registry import check_connectors

    configured = connectors_or_fail(runtime())
    if not configured:
        raise click.ClickException("no connectors configured (DSAR_CONNECTORS)")
    results = check_connectors(configured)
    for health in results:
        click.echo(f"{health.name:<20} {'ok' if health.ok else 'FAILED':<7} {health.message}")
    failed = sum(not health.ok for health in results)
    if failed:
        sys.exit(1)


@connectors.command("new")
@click.argument("name")
@click.option("--directory", type=click.Path(file_okay=False, path_type=Path), default=".",
              show_default=True, help="Where to create the package folder.")
def connectors_new(name: str, directory: Path) -> None:
    """Write a working connector package to start from (entry point, class, tests)."""
    from ..scaffold import ScaffoldError, new_connector

    try:
        target = new_connector(name, directory)
    except ScaffoldError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {target}\nnext: pip install -e {target} && pytest {target}")
