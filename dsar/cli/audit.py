"""``dsar audit``: verify and export the tamper-evident chain."""

from __future__ import annotations

import sys
from itertools import islice
from typing import Any

import click
from flask.cli import with_appcontext

from .. import audit, audit_checks
from ..runtime import runtime
from .base import main, transaction

#: requests the chain does not account for that `dsar audit verify` lists by id
UNRECORDED_SHOWN = 20

# --- audit ----------------------------------------------------------------------------

@main.group("audit")
def audit_group() -> None:
    """The tamper-evident audit trail."""


def _anchor(_ctx: click.Context, _param: click.Parameter,
            values: tuple[str, ...]) -> dict[int, str]:
    anchors: dict[int, str] = {}
    for value in values:
        seq, _, digest = value.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise click.BadParameter(f"{value!r}: expected SEQ:HASH as printed by dsar audit head")
        anchors[int(seq)] = digest.lower()
    return anchors


@audit_group.command("verify")
@click.option("--anchor", "anchors", multiple=True, callback=_anchor, metavar="SEQ:HASH",
              help="A head recorded earlier (dsar audit head): catches a rollback.")
@with_appcontext
def audit_verify(anchors: dict[int, str]) -> None:
    """Check every event's link, hash and seal, and the sealed head; then that
    every request row has the events its state implies."""
    rt = runtime()
    with rt.reading() as session:  # one snapshot; writers go on meanwhile
        result = audit.verify(session, rt.crypto, anchors)
        unrecorded = list(islice(audit_checks.unrecorded_requests(session), UNRECORDED_SHOWN + 1))
    if result.ok:
        click.echo(f"audit chain intact: {result.checked} events")
    else:
        where = f"event {result.bad_seq}" if result.bad_seq else "the head"
        click.echo(f"audit chain BROKEN at {where}: {result.problem} "
                   f"({result.checked} events before it are intact)", err=True)
    for row in unrecorded[:UNRECORDED_SHOWN]:
        click.echo(f"request {row.request_id} ({row.status}): {row.missing}", err=True)
    if len(unrecorded) > UNRECORDED_SHOWN:
        click.echo("... and more requests the chain does not account for", err=True)
    elif not unrecorded:
        click.echo("every request has the events its state implies")
    if not result.ok or unrecorded:
        sys.exit(1)


@audit_group.command("head")
@with_appcontext
def audit_head() -> None:
    """Print the sealed head as SEQ:HASH, to record outside the database
    (a ticket, write-once storage) and pass to verify --anchor later; only
    when its seal holds and it names an event that is there."""
    with transaction() as (rt, session):
        problem = audit.check_head(session, rt.crypto)
        sealed = audit.head(session)
    if problem:
        click.echo(f"audit head NOT printed: {problem}; run dsar audit verify", err=True)
        sys.exit(1)
    click.echo(f"{sealed['seq']}:{sealed['hash']}")


@audit_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True)
@click.option("--output", type=click.File("w", encoding="utf-8"), default="-")
@with_appcontext
def audit_export(fmt: str, output: Any) -> None:
    """Write the whole chain, with hashes and seals, for offline review."""
    rt = runtime()
    with rt.reading() as session:
        count = audit.export(session, output, fmt)
    click.echo(f"{count} events exported", err=True)
