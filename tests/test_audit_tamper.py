"""Every change someone with database access can make to the audit chain is
reported, at the event it touches, saying what is wrong.

The chain is five events (``CHAIN``); the tampering targets event 3 unless a
case says otherwise. Each table row changes one thing with a direct SQL
UPDATE or DELETE, as an attacker or a careless administrator would, on
SQLite and PostgreSQL. ``audit.verify`` and ``dsar audit verify`` must then
name the event and the problem.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from click.testing import Result
from sqlalchemy import Table, delete, func, select, update

from dsar import audit
from dsar.crypto import Crypto
from dsar.models import AuditEvent, AuditHead
from dsar.runtime import Runtime

EVENTS, HEADS = cast(Table, AuditEvent.__table__), cast(Table, AuditHead.__table__)
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
#: what every event of the chain says: the crm erasure of a request succeeded
DETAILS = {"connector": "crm", "deleted": 3, "holds": ["tax-law"], "verified": True}
#: the same details as stored (sorted keys, no spaces), for reading the table below
STORED = '{"connector":"crm","deleted":3,"holds":["tax-law"],"verified":true}'
#: someone without the audit key (the database is all they have)
NO_KEY = Crypto("attacker-does-not-have-the-key-000000000")

EDITED = "content does not match its hash (edited)"
UNSEALED = "seal does not match (rewritten without the audit key)"
HEAD_UNSEALED = "the head's seal does not match"


@pytest.fixture
def chain(rt: Runtime) -> Runtime:
    """Five events, of requests request-1 to request-5, recorded through the app."""
    for n in range(1, 6):
        with rt.transaction() as session:
            audit.record(session, rt.crypto, "task.succeeded", actor="connector:crm",
                         request_id=f"request-{n}", details=DETAILS)
    with rt.transaction() as session:
        stored = session.scalar(select(AuditEvent.details).where(AuditEvent.seq == 3))
    assert stored == STORED
    assert verify(rt) == audit.Verification(True, 5)
    return rt


def verify(rt: Runtime) -> audit.Verification:
    with rt.transaction() as session:
        return audit.verify(session, rt.crypto)


def assert_reported(rt: Runtime, cli: Callable[..., Result], checked: int, bad_seq: int,
                    problem: str) -> None:
    """verify() and the command both report ``problem`` at ``bad_seq``."""
    assert verify(rt) == audit.Verification(False, checked, bad_seq, problem)
    out = cli("audit", "verify")
    assert out.exit_code == 1
    assert f"audit chain BROKEN at event {bad_seq}: {problem}" in out.output


def change_event(rt: Runtime, event: int, field: str, value: Any) -> None:
    """Set ``field`` of ``event`` to ``value`` (a function: of its value now)."""
    with rt.engine.begin() as connection:
        where = EVENTS.c.seq == event
        if callable(value):
            value = value(connection.scalar(select(EVENTS.c[field]).where(where)))
        connection.execute(update(EVENTS).where(where).values({field: value}))


def change_head(rt: Runtime, **values: Any) -> None:
    with rt.engine.begin() as connection:
        connection.execute(update(HEADS).where(HEADS.c.id == audit.HEAD_ID).values(**values))


def later(**by: float) -> Callable[[datetime], datetime]:
    """A time moved on ``by`` (``seconds=1``, ``microseconds=1``)."""
    return lambda moment: moment + timedelta(**by)


def details(**changes: Any) -> str:
    """``DETAILS`` with ``changes`` (``None`` removes a key), stored as JSON."""
    changed = {**DETAILS, **changes}
    return json.dumps({k: v for k, v in changed.items() if v is not None},
                      sort_keys=True, separators=(",", ":"))


# Every field the event's hash covers (audit.canonical), the stored hash and
# its seal: event 3's new value, and what verify must say about event 3.
EVENT_FIELDS = [
    pytest.param("seq", 99, "event 3 is missing (next found is 4)", id="seq"),
    pytest.param("occurred_at", later(seconds=1), EDITED, id="occurred_at: a second later"),
    pytest.param("occurred_at", later(microseconds=1), EDITED,
                 id="occurred_at: a microsecond later"),
    pytest.param("actor", "officer:someone-else", EDITED, id="actor"),
    pytest.param("action", "task.failed", EDITED, id="action"),
    pytest.param("request_id", "request-4", EDITED, id="request_id: another request"),
    pytest.param("request_id", None, EDITED, id="request_id: cleared"),
    pytest.param("details", '{"n":99}', EDITED, id="details: replaced"),
    pytest.param("details", details(deleted=0), EDITED, id="details: a count changed"),
    pytest.param("details", details(deleted="3"), EDITED,
                 id="details: a number turned into text"),
    pytest.param("details", details(verified=False), EDITED, id="details: a flag flipped"),
    pytest.param("details", details(holds=[]), EDITED, id="details: a hold removed"),
    pytest.param("details", details(holds=None), EDITED, id="details: a key removed"),
    pytest.param("details", details(note="by hand"), EDITED, id="details: a key added"),
    pytest.param("details", STORED[:-1], "details are not valid JSON",
                 id="details: no longer JSON"),
    pytest.param("prev_hash", "e" * 64,
                 "does not continue the previous event (removed, inserted or reordered)",
                 id="prev_hash"),
    pytest.param("hash", "f" * 64, EDITED, id="hash"),
    pytest.param("mac", "0" * 64, UNSEALED, id="mac"),
]


@pytest.mark.parametrize(("field", "value", "problem"), EVENT_FIELDS)
def test_a_changed_event_field_is_reported_at_that_event(
        chain: Runtime, cli: Callable[..., Result], field: str, value: Any,
        problem: str) -> None:
    """One field of one event changed in the database, nothing else."""
    change_event(chain, 3, field, value)
    assert_reported(chain, cli, 2, 3, problem)


def test_the_hash_covers_every_field_of_an_event() -> None:
    """The canonical text changes with each field, so no field can be edited
    under an unchanged hash. (seq and prev_hash edits are caught by the walk's
    order and link checks before the hash is compared: this is what keeps
    them under the hash too.)"""
    event = {"seq": 3, "occurred_at": T0, "actor": "connector:crm",
             "action": "task.succeeded", "request_id": "request-3", "details": STORED,
             "prev_hash": "a" * 64}
    others = {"seq": 4, "occurred_at": T0 + timedelta(microseconds=1), "actor": "cli",
              "action": "task.failed", "request_id": None, "details": details(deleted=0),
              "prev_hash": "b" * 64}
    assert set(event) == set(audit.EXPORT_FIELDS) - {"hash", "mac"}
    original = audit.canonical(**event)
    for field, other in others.items():
        assert audit.canonical(**{**event, field: other}) != original, field


def test_the_stored_hash_is_the_sha256_of_the_canonical_text(chain: Runtime) -> None:
    """What an auditor recomputes from an export is what was stored."""
    with chain.transaction() as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        for row in rows:
            text = audit.canonical(row.seq, row.occurred_at, row.actor, row.action,
                                   row.request_id, row.details, row.prev_hash)
            assert row.hash == hashlib.sha256(text.encode()).hexdigest()
            assert row.mac == chain.crypto.audit_mac(row.hash)


# The head alone forged, the events left intact: the head's new value, and
# the event verify must name (the one the forged head names).
HEAD_FIELDS = [
    pytest.param("seq", 4, 4, "the sealed head names event 4 but the chain ends at 5: events "
                 "were removed from the end or appended", id="seq: one less"),
    pytest.param("seq", 6, 6, "the sealed head names event 6 but the chain ends at 5: events "
                 "were removed from the end or appended", id="seq: one more"),
    pytest.param("hash", "f" * 64, 5, "the sealed head names event 5 with another hash than "
                 "the chain's last: the head or the last event was replaced", id="hash"),
    pytest.param("mac", "0" * 64, 5, HEAD_UNSEALED, id="mac"),
]


@pytest.mark.parametrize(("field", "value", "bad_seq", "problem"), HEAD_FIELDS)
def test_a_forged_head_is_reported(chain: Runtime, cli: Callable[..., Result], field: str,
                                   value: Any, bad_seq: int, problem: str) -> None:
    """One field of the sealed head changed in the database, nothing else."""
    change_head(chain, **{field: value})
    assert_reported(chain, cli, 5, bad_seq, problem)


def drop_the_last_two(rt: Runtime) -> None:
    with rt.engine.begin() as connection:
        connection.execute(delete(EVENTS).where(EVENTS.c.seq > 3))


def last_two_dropped_head_left(rt: Runtime) -> None:
    drop_the_last_two(rt)


def last_two_dropped_head_moved_back_keeping_its_seal(rt: Runtime) -> None:
    drop_the_last_two(rt)
    change_head(rt, seq=3, hash=event_hash(rt, 3))


def last_two_dropped_head_moved_back_sealed_without_the_key(rt: Runtime) -> None:
    drop_the_last_two(rt)
    change_head(rt, seq=3, hash=event_hash(rt, 3),
                mac=NO_KEY.audit_mac(f"head:3:{event_hash(rt, 3)}"))


def event_3_edited_chain_recomputed_seals_kept(rt: Runtime) -> None:
    rewrite(rt, 3, None)


def event_3_edited_chain_recomputed_sealed_without_the_key(rt: Runtime) -> None:
    rewrite(rt, 3, NO_KEY)


def whole_chain_and_head_recomputed_sealed_without_the_key(rt: Runtime) -> None:
    rewrite(rt, 1, NO_KEY)


def event_hash(rt: Runtime, seq: int) -> str:
    with rt.engine.begin() as connection:
        return str(connection.scalar(select(EVENTS.c.hash).where(EVENTS.c.seq == seq)))


def rewrite(rt: Runtime, start: int, seal: Crypto | None) -> None:
    """What someone with the database but not the audit key can do: edit
    event ``start`` (``deleted`` 3 → 0), then recompute every hash and link
    from there on and point the head at the new last hash. ``seal``: the key
    the event and head seals are recomputed with (``None``: old seals kept)."""
    with rt.engine.begin() as connection:
        rows = connection.execute(select(EVENTS).order_by(EVENTS.c.seq)).all()
        prev = rows[start - 2].hash if start > 1 else audit.GENESIS_HASH
        rewritten = []
        for row in rows[start - 1:]:
            text = details(deleted=0) if row.seq == start else row.details
            body = audit.canonical(row.seq, row.occurred_at, row.actor, row.action,
                                   row.request_id, text, prev)
            new_hash = hashlib.sha256(body.encode()).hexdigest()
            mac = row.mac if seal is None else seal.audit_mac(new_hash)
            rewritten.append({"seq": row.seq, "details": text, "prev_hash": prev,
                              "hash": new_hash, "mac": mac})
            prev = new_hash
        # hashes are unique: move the old ones out of the way first
        connection.execute(update(EVENTS).where(EVENTS.c.seq >= start).values(
            prev_hash="x" + func.substr(EVENTS.c.hash, 2),
            hash="y" + func.substr(EVENTS.c.hash, 2)))
        for values in rewritten:
            connection.execute(update(EVENTS).where(EVENTS.c.seq == values["seq"])
                               .values(**values))
        head: dict[str, Any] = {"hash": prev}
        if seal is not None:
            head["mac"] = seal.audit_mac(f"head:{len(rows)}:{prev}")
        connection.execute(update(HEADS).where(HEADS.c.id == audit.HEAD_ID).values(**head))


# Deletions and rewrites that keep every remaining link consistent: what was
# done, and what verify must report (events intact before it, event, problem).
CHAIN_TAMPERING = [
    pytest.param(last_two_dropped_head_left, 3, 4, "the sealed head names event 5 but the "
                 "chain ends at 3: events were removed from the end or appended",
                 id="events 4-5 deleted, the head left naming event 5"),
    pytest.param(last_two_dropped_head_moved_back_keeping_its_seal, 3, 3, HEAD_UNSEALED,
                 id="events 4-5 deleted, the head moved back to event 3, its old seal kept"),
    pytest.param(last_two_dropped_head_moved_back_sealed_without_the_key, 3, 3, HEAD_UNSEALED,
                 id="events 4-5 deleted, the head moved back to event 3, sealed without the "
                 "key"),
    pytest.param(event_3_edited_chain_recomputed_seals_kept, 2, 3, UNSEALED,
                 id="event 3 edited, hashes 3-5 and the head recomputed, old seals kept"),
    pytest.param(event_3_edited_chain_recomputed_sealed_without_the_key, 2, 3, UNSEALED,
                 id="event 3 edited, hashes 3-5 and the head recomputed and sealed without "
                 "the key"),
    pytest.param(whole_chain_and_head_recomputed_sealed_without_the_key, 0, 1, UNSEALED,
                 id="event 1 edited, the whole chain and the head recomputed and sealed "
                 "without the key"),
]


@pytest.mark.parametrize(("tamper", "checked", "bad_seq", "problem"), CHAIN_TAMPERING)
def test_a_shortened_or_recomputed_chain_is_reported(
        chain: Runtime, cli: Callable[..., Result], tamper: Callable[[Runtime], None],
        checked: int, bad_seq: int, problem: str) -> None:
    tamper(chain)
    assert_reported(chain, cli, checked, bad_seq, problem)


@pytest.mark.parametrize("start", [1, 3], ids=["from event 1", "from event 3"])
def test_the_recomputed_chain_lacks_only_the_key(chain: Runtime, start: int) -> None:
    """The rewrites above are perfect forgeries but for the audit key: sealed
    with the real key, the same rewrite verifies. So what the table catches
    is the missing key, not a clumsy forger."""
    rewrite(chain, start, chain.crypto)
    assert verify(chain) == audit.Verification(True, 5)
    with chain.transaction() as session:
        assert session.scalar(select(AuditEvent.details).where(
            AuditEvent.seq == start)) == details(deleted=0)
