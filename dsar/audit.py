"""The only writer and reader of the audit chain.

Each event stores the hash of the previous event and its own SHA-256 over a
canonical encoding (sorted-key JSON, UTC time with microseconds), plus an HMAC
of that hash under the audit key, which lives outside the database. The single
``audit_heads`` row names the last event and is sealed with the same key, so
removing events from the end, or rewriting the whole table with recomputed
hashes, is detected too.

:func:`record` appends inside the caller's transaction: the event commits or
rolls back with the change it describes. Appends serialise on the head row
(``SELECT ... FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE`` does the same), and
``prev_hash`` is unique, so the chain cannot fork. The head is locked late:
a transaction's events are chained together just before it commits (or
before it next reads the audit tables), after its other changes are
flushed, so the lock is the transaction's last and is held only for its
last statements.

Details must never hold raw identifiers: pass :meth:`Crypto.identifier_digest`
values instead.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, cast

from sqlalchemy import ScalarResult, Table, bindparam, event, insert, select, update
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction
from sqlalchemy.sql import ClauseElement, ColumnElement
from sqlalchemy.sql.util import find_tables

from .clock import now_of
from .crypto import Crypto, constant_time_equal
from .models import AuditEvent, AuditHead

GENESIS_HASH = "0" * 64
HEAD_ID = 1


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(seq: int, occurred_at: datetime, actor: str, action: str,
              request_id: str | None, details: str, prev_hash: str) -> str:
    """The exact text an event's hash is computed over."""
    return json.dumps(
        {"seq": seq, "occurred_at": _iso(occurred_at), "actor": actor, "action": action,
         "request_id": request_id, "details": json.loads(details), "prev_hash": prev_hash},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )


def _hash(seq: int, occurred_at: datetime, actor: str, action: str, request_id: str | None,
          details: str, prev_hash: str) -> str:
    """An event's hash: SHA-256 of its :func:`canonical` text."""
    text = canonical(seq, occurred_at, actor, action, request_id, details, prev_hash)
    return hashlib.sha256(text.encode()).hexdigest()


def _event_hash(event: AuditEvent) -> str:
    return _hash(event.seq, event.occurred_at, event.actor, event.action, event.request_id,
                 event.details, event.prev_hash)


def _head_message(seq: int, head_hash: str) -> str:
    return f"head:{seq}:{head_hash}"


class AuditHeadMissing(RuntimeError):
    """The head row is gone: the database was never migrated, or tampered with."""


def record(session: Session, crypto: Crypto, action: str, *, actor: str,
           request_id: str | None = None, details: Mapping[str, Any] | None = None) -> None:
    """Append one event in the caller's transaction and move the sealed head.

    ``actor`` is who acted (``requester``, ``officer:<name>``, ``system``,
    ``connector:<instance>``, ``cli``); ``details`` a JSON-serialisable mapping
    without personal data. The event is chained (``seq``, hashes, seal) when
    the transaction commits, or earlier when the session first queries the
    audit tables (so such reads see it, as with autoflush): the head row is
    locked only then, after every other change of the transaction is
    flushed, so it stays the last lock taken and is held for the shortest
    time. Inside a savepoint, or as a transaction's first work, the event is
    chained at once (in a savepoint, before events the outer transaction
    recorded earlier and has not chained yet).
    Raises :class:`AuditHeadMissing` (from here or from the commit) when the
    head row is gone.
    """
    entry = _Pending(crypto, actor, action, request_id,
                     json.dumps(dict(details or {}), sort_keys=True, separators=(",", ":")))
    if session.in_nested_transaction() or not session.in_transaction():
        _append(session, [entry])  # a savepoint's rollback must take it too
    else:
        session.info.setdefault(_PENDING, []).append(entry)


@dataclass(frozen=True)
class _Pending:
    """An event recorded in a transaction and not chained yet."""

    crypto: Crypto
    actor: str
    action: str
    request_id: str | None
    details: str


_PENDING = "dsar_audit_pending"  # session.info: the transaction's _Pending events
_EVENTS, _HEADS = cast(Table, AuditEvent.__table__), cast(Table, AuditHead.__table__)
_AUDIT_TABLES = frozenset({_EVENTS, _HEADS})
_ADD_EVENTS = insert(_EVENTS)
_LOCK_HEAD = select(_HEADS.c.seq, _HEADS.c.hash).where(_HEADS.c.id == HEAD_ID).with_for_update()
_MOVE_HEAD = update(_HEADS).where(_HEADS.c.id == HEAD_ID).values(
    seq=bindparam("new_seq"), hash=bindparam("new_hash"), mac=bindparam("new_mac"))


def _append_pending(session: Session) -> None:
    """Chain the session's pending events under the locked head."""
    pending = session.info.pop(_PENDING, None)
    if pending:
        _append(session, pending)


def _append(session: Session, pending: list[_Pending]) -> None:
    """Lock the head, insert the events chained to it, move and seal it.
    Core statements (three round trips however many events): the chain's
    rows are never ORM objects while they are written."""
    session.flush()  # the transaction's other row locks first: the head is the last
    conn = session.connection()
    head = conn.execute(_LOCK_HEAD).first()
    if head is None:
        # The migration creates it; starting a new chain here would hide a
        # deleted head (and race with another first append).
        raise AuditHeadMissing("the audit head is missing: run `dsar db upgrade` on a new "
                               "database; otherwise run `dsar audit verify`")
    seq, last, rows = head.seq, head.hash, []
    for entry in pending:
        seq, occurred_at = seq + 1, now_of(session)
        digest = _hash(seq, occurred_at, entry.actor, entry.action, entry.request_id,
                       entry.details, last)
        rows.append({"seq": seq, "occurred_at": occurred_at, "actor": entry.actor,
                     "action": entry.action, "request_id": entry.request_id,
                     "details": entry.details, "prev_hash": last, "hash": digest,
                     "mac": entry.crypto.audit_mac(digest)})
        last = digest
    conn.execute(_ADD_EVENTS, rows)
    conn.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": last,
                              "new_mac": pending[0].crypto.audit_mac(_head_message(seq, last))})
    held = session.identity_map.get(session.identity_key(AuditHead, HEAD_ID))
    if held is not None:
        session.expire(held)  # an ORM copy of the head read earlier is stale now


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    if not session.in_nested_transaction():  # a savepoint's events were chained already
        _append_pending(session)


@event.listens_for(Session, "do_orm_execute")
def _before_query(state: ORMExecuteState) -> None:
    """A query of the audit tables in a transaction with pending events sees
    them, as with autoflush; other queries leave them pending (one chaining,
    one head lock, per transaction)."""
    session = state.session
    if session.info.get(_PENDING) and state.is_select and session.autoflush \
            and not session.in_nested_transaction() \
            and isinstance(state.statement, ClauseElement) \
            and not _AUDIT_TABLES.isdisjoint(find_tables(state.statement)):
        _append_pending(session)


@event.listens_for(Session, "after_transaction_end")
def _transaction_ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # rolled back (or committed: nothing is left)
        session.info.pop(_PENDING, None)


@dataclass(frozen=True)
class Verification:
    """The outcome of :func:`verify`: ``bad_seq`` is the first bad or missing
    event, or the one a bad head names (``None`` when the chain is intact or
    the head row is gone). ``checked``: the events this pass checked;
    ``last_seq``/``last_hash``: the last event found intact (0 and the
    genesis hash when none): where the next incremental pass may start, not
    part of the outcome (equality leaves them out)."""

    ok: bool
    checked: int
    bad_seq: int | None = None
    problem: str = ""
    last_seq: int = field(default=0, compare=False)
    last_hash: str = field(default=GENESIS_HASH, compare=False)


def verify(session: Session, crypto: Crypto, anchors: Mapping[int, str] | None = None,
           *, after: tuple[int, str] | None = None) -> Verification:
    """Walk the chain in order and check every link, hash and seal, then the head.

    Detects an edited, deleted, inserted or reordered event, events removed
    from the end, and a rewrite with recomputed hashes (the seals need the
    audit key). ``anchors`` (seq → hash, heads recorded earlier outside the
    database with :func:`head`) also catch a rollback of the whole table to
    an older sealed state. ``after`` (seq, hash): a point an earlier check
    found intact; only the events after it are walked (the event there must
    still carry that hash and its seal), so an edit before it goes unseen
    until a full pass. Streams: memory does not grow with the chain.
    """
    anchors = dict(anchors or {})
    (last_seq, prev_hash), checked = after or (0, GENESIS_HASH), 0
    if last_seq:
        problem = _check_point(session, crypto, last_seq, prev_hash)
        if problem:
            return Verification(False, 0, last_seq, problem)
    with _stream(session, AuditEvent.seq > last_seq) as rows:
        for event in rows:
            problem = _check_event(event, last_seq + 1, prev_hash, crypto)
            if not problem and anchors.get(event.seq, event.hash) != event.hash:
                problem = "differs from the anchor recorded outside the database"
            if problem:
                bad = min(event.seq, last_seq + 1)  # a gap names the missing event
                return Verification(False, checked, bad, problem, last_seq, prev_hash)
            last_seq, prev_hash, checked = event.seq, event.hash, checked + 1
    missing = sorted(seq for seq in anchors if seq > last_seq)
    if missing:
        return Verification(False, checked, missing[0], "an anchored event is missing: the "
                            "log was rolled back or truncated", last_seq, prev_hash)
    return _check_head(session, crypto, checked, last_seq, prev_hash)


def head(session: Session) -> dict[str, Any]:
    """The sealed head (seq, hash, mac): record it outside the database (a
    ticket, a write-once store) and pass it back to :func:`verify` later.
    :func:`check_head` first: a head whose seal fails is no anchor."""
    row = session.get(AuditHead, HEAD_ID)
    if row is None:
        return {"seq": 0, "hash": GENESIS_HASH, "mac": ""}
    return {"seq": row.seq, "hash": row.hash, "mac": row.mac}


def check_head(session: Session, crypto: Crypto) -> str:
    """What is wrong with the head ("" when nothing): gone, its seal not
    matching, or naming an event that is not there with its hash and seal."""
    row = session.get(AuditHead, HEAD_ID)
    if row is None:
        return "the sealed head is missing"
    if row.seq == 0:
        return "" if row.hash == GENESIS_HASH else "the empty head names another hash"
    if not constant_time_equal(crypto.audit_mac(_head_message(row.seq, row.hash)), row.mac):
        return "the head's seal does not match"
    return _check_point(session, crypto, row.seq, row.hash)


def _check_point(session: Session, crypto: Crypto, seq: int, digest: str) -> str:
    """What is wrong with event ``seq`` as a point recorded with ``digest``
    ("" when nothing): gone, another hash, its content or its seal not matching."""
    event = session.get(AuditEvent, seq)
    if event is None:
        return f"event {seq} is missing"
    if not constant_time_equal(event.hash, digest):
        return f"event {seq} has another hash than the one recorded for it"
    problem = _check_event(event, seq, event.prev_hash, crypto)
    return f"event {seq}: {problem}" if problem else ""


@contextmanager
def _stream(session: Session, *where: ColumnElement[bool]) -> Iterator[ScalarResult[AuditEvent]]:
    """The events ``where`` holds, in order, fetched in batches; the cursor is
    closed on exit."""
    result = session.execute(select(AuditEvent).where(*where).order_by(AuditEvent.seq)
                             .execution_options(yield_per=500)).scalars()
    try:
        yield result
    finally:
        result.close()


def _check_event(event: AuditEvent, expected_seq: int, prev_hash: str,
                 crypto: Crypto) -> str:
    if event.seq != expected_seq:
        return f"event {expected_seq} is missing (next found is {event.seq})"
    if event.prev_hash != prev_hash:
        return "does not continue the previous event (removed, inserted or reordered)"
    try:
        actual = _event_hash(event)
    except (ValueError, TypeError):
        return "details are not valid JSON"
    if not constant_time_equal(actual, event.hash):
        return "content does not match its hash (edited)"
    if not constant_time_equal(crypto.audit_mac(event.hash), event.mac):
        return "seal does not match (rewritten without the audit key)"
    return ""


def _check_head(session: Session, crypto: Crypto, checked: int, last_seq: int,
                last_hash: str) -> Verification:
    def broken(bad_seq: int | None, problem: str) -> Verification:
        return Verification(False, checked, bad_seq, problem, last_seq, last_hash)

    head = session.get(AuditHead, HEAD_ID)
    if head is None:
        if last_seq == 0:
            return Verification(True, 0)
        return broken(None, "the sealed head is missing")
    if head.seq != last_seq:
        return broken(min(head.seq, last_seq + 1) or None,
                      f"the sealed head names event {head.seq} but the chain ends at "
                      f"{last_seq}: events were removed from the end or appended")
    if head.hash != last_hash:
        return broken(head.seq or None, f"the sealed head names event {head.seq} with another "
                      "hash than the chain's last: the head or the last event was replaced")
    if last_seq and not constant_time_equal(
            crypto.audit_mac(_head_message(head.seq, head.hash)), head.mac):
        return broken(head.seq, "the head's seal does not match")
    return Verification(True, checked, None, "", last_seq, last_hash)


EXPORT_FIELDS = ("seq", "occurred_at", "actor", "action", "request_id", "details",
                 "prev_hash", "hash", "mac")
EXPORT_FORMATS = ("jsonl", "csv")


@dataclass(frozen=True)
class Trail:
    """A part of the trail: events of one request, by one actor, of one
    action, in a time range (``since`` included, ``until`` not); every field
    empty is the whole chain. The indexes of migration 0011 serve each."""

    request_id: str | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    #: the last event included (an export: the chain as it was when asked for)
    through: int | None = None

    def where(self) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        if self.through is not None:
            clauses.append(AuditEvent.seq <= self.through)
        if self.request_id:
            clauses.append(AuditEvent.request_id == self.request_id)
        if self.actor:
            clauses.append(AuditEvent.actor == self.actor)
        if self.action:
            clauses.append(AuditEvent.action == self.action)
        if self.since is not None:
            clauses.append(AuditEvent.occurred_at >= self.since)
        if self.until is not None:
            clauses.append(AuditEvent.occurred_at < self.until)
        return clauses


def page(session: Session, trail: Trail, *, size: int,
         before: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """One page of ``trail``, newest first: the events before ``before`` (a
    seq; ``None``: the newest), and the seq to pass for the next page (``None``
    on the last)."""
    where = trail.where()
    if before is not None:
        where.append(AuditEvent.seq < before)
    rows = session.scalars(select(AuditEvent).where(*where)
                           .order_by(AuditEvent.seq.desc()).limit(size + 1)).all()
    more = len(rows) > size
    return [_as_dict(event) for event in rows[:size]], rows[size - 1].seq if more else None


def iter_events(session: Session, trail: Trail = Trail()) -> Iterator[dict[str, Any]]:
    """The events of ``trail`` (every event by default) as plain dicts, in
    order, streaming."""
    with _stream(session, *trail.where()) as rows:
        yield from (_as_dict(event) for event in rows)


def _as_dict(event: AuditEvent) -> dict[str, Any]:
    return {"seq": event.seq, "occurred_at": _iso(event.occurred_at), "actor": event.actor,
               "action": event.action, "request_id": event.request_id,
               "details": json.loads(event.details), "prev_hash": event.prev_hash,
               "hash": event.hash, "mac": event.mac}


def lines(session: Session, fmt: str, trail: Trail = Trail()) -> Iterator[str]:
    """The events of ``trail`` as ``jsonl`` or ``csv`` text, a line at a time
    (the CSV's header first). Each carries its hashes and seal, so it can be
    checked offline; a whole chain's export can be walked link by link."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use jsonl or csv")
    if fmt == "jsonl":
        for row in iter_events(session, trail):
            yield json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS)
    writer.writeheader()
    for row in iter_events(session, trail):
        yield buffer.getvalue()  # the header first, then each row
        buffer.seek(0)
        buffer.truncate()
        row["details"] = json.dumps(row["details"], sort_keys=True, ensure_ascii=False)
        writer.writerow(row)
    yield buffer.getvalue()


def export(session: Session, out: IO[str], fmt: str = "jsonl", trail: Trail = Trail()) -> int:
    """Write ``trail`` (the whole chain by default) to ``out`` as ``jsonl`` or
    ``csv`` (:func:`lines`); returns the count of events."""
    count = 0
    for line in lines(session, fmt, trail):
        out.write(line)
        count += 1
    return count - 1 if fmt == "csv" else count  # the CSV's header is no event
