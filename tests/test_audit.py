"""The audit chain detects every kind of tampering, and cannot fork.

One field, the head or the end of the chain changed at a time, each reported
at its event: tests/test_audit_tamper.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pytest
from click.testing import Result
from sqlalchemy import select, text

from dsar import audit
from dsar.models import AuditEvent, AuditHead
from dsar.runtime import Runtime


def append(rt: Runtime, count: int) -> None:
    for index in range(count):
        with rt.transaction() as session:
            audit.record(session, rt.crypto, "test.event", actor="tester",
                         request_id=f"r{index}", details={"n": index})


def verify(rt: Runtime) -> audit.Verification:
    with rt.transaction() as session:
        return audit.verify(session, rt.crypto)


def sql(rt: Runtime, statement: str, **params: object) -> None:
    with rt.engine.begin() as connection:
        connection.execute(text(statement), params)


def test_intact_chain_verifies(rt: Runtime, cli: Callable[..., Result]) -> None:
    assert verify(rt) == audit.Verification(True, 0)
    append(rt, 5)
    assert verify(rt) == audit.Verification(True, 5)
    result = cli("audit", "verify")
    assert result.exit_code == 0 and "intact: 5 events" in result.output


def test_deleted_middle_row(rt: Runtime) -> None:
    append(rt, 5)
    sql(rt, "DELETE FROM audit_events WHERE seq = 3")
    result = verify(rt)
    assert (result.ok, result.bad_seq) == (False, 3)
    assert "missing" in result.problem


def test_reordered_rows(rt: Runtime) -> None:
    append(rt, 5)
    with rt.engine.begin() as connection:
        rows = {r.seq: r for r in connection.execute(
            text("SELECT * FROM audit_events WHERE seq IN (2, 4)"))}
        connection.execute(text("DELETE FROM audit_events WHERE seq IN (2, 4)"))
        for new_seq, old in ((2, rows[4]), (4, rows[2])):
            values = {**old._asdict(), "seq": new_seq}
            connection.execute(text(
                "INSERT INTO audit_events (seq, occurred_at, actor, action, request_id, details,"
                " prev_hash, hash, mac) VALUES (:seq, :occurred_at, :actor, :action, :request_id,"
                " :details, :prev_hash, :hash, :mac)"), values)
    result = verify(rt)
    assert (result.ok, result.bad_seq) == (False, 2)


def test_appended_then_removed(rt: Runtime) -> None:
    """An event appended through the app and then deleted with its head
    rolled back by hand still leaves the head seal wrong."""
    append(rt, 3)
    with rt.transaction() as session:
        head = session.get(AuditHead, audit.HEAD_ID)
        assert head is not None
        old = (head.seq, head.hash, head.mac)
    append(rt, 1)
    sql(rt, "DELETE FROM audit_events WHERE seq = 4")
    assert verify(rt).ok is False
    sql(rt, "UPDATE audit_heads SET seq = :s, hash = :h, mac = :m WHERE id = 1",
        s=old[0], h=old[1], m=old[2])
    # Rolling the head back to an earlier sealed state is the one rewrite a
    # database-only attacker can do: documented in SECURITY.md (anchor the
    # head outside the database to catch it).
    assert verify(rt).ok is True


def test_concurrent_appends_do_not_fork(rt: Runtime) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(15):
                with rt.transaction() as session:
                    audit.record(session, rt.crypto, "test.concurrent", actor="t")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    result = verify(rt)
    assert result == audit.Verification(True, 60)
    with rt.transaction() as session:
        seqs = session.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)).all()
    assert seqs == list(range(1, 61))


def test_details_refuse_nothing_but_hold_no_identifiers(rt: Runtime) -> None:
    with rt.transaction() as session:
        from dsar.workflow import requests as flow

        flow.submit(session, rt, "access", {"email": ["Carol@Example.org"]})
    with rt.transaction() as session:
        rows = list(audit.iter_events(session))
    dumped = json.dumps(rows).lower()
    assert "carol" not in dumped
    assert rows[0]["details"]["identifiers"][0].startswith("email:")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export(rt: Runtime, cli: Callable[..., Result], fmt: str, tmp_path) -> None:
    append(rt, 3)
    out = tmp_path / f"audit.{fmt}"
    result = cli("audit", "export", "--format", fmt, "--output", str(out))
    assert result.exit_code == 0
    lines = out.read_text().splitlines()
    if fmt == "jsonl":
        rows = [json.loads(line) for line in lines]
        assert [r["seq"] for r in rows] == [1, 2, 3]
        assert rows[1]["prev_hash"] == rows[0]["hash"]
        assert rows[0]["occurred_at"].endswith("Z") and "." in rows[0]["occurred_at"]
    else:
        assert lines[0] == ",".join(audit.EXPORT_FIELDS)
        assert len(lines) == 4


def test_rollback_to_an_older_sealed_state_is_caught_by_an_anchor(
        rt: Runtime, cli: Callable[..., Result]) -> None:
    append(rt, 3)
    with rt.transaction() as session:
        old = session.get(AuditHead, audit.HEAD_ID)
        assert old is not None
        saved = (old.seq, old.hash, old.mac)
    append(rt, 2)
    anchor = cli("audit", "head").output.strip()
    assert anchor.startswith("5:") and len(anchor) == 2 + 64
    assert cli("audit", "verify", "--anchor", anchor).exit_code == 0
    # an attacker restores events 1-3 and the head as they were (a valid older state)
    sql(rt, "DELETE FROM audit_events WHERE seq > 3")
    sql(rt, "UPDATE audit_heads SET seq = :s, hash = :h, mac = :m WHERE id = 1",
        s=saved[0], h=saved[1], m=saved[2])
    assert cli("audit", "verify").exit_code == 0  # undetectable from inside...
    result = cli("audit", "verify", "--anchor", anchor)  # ...but not against the anchor
    assert result.exit_code == 1 and "event 5" in result.output
    assert "rolled back" in result.output


def test_anchor_with_another_hash_fails(rt: Runtime, cli: Callable[..., Result]) -> None:
    append(rt, 2)
    result = cli("audit", "verify", "--anchor", "2:" + "ab" * 32)
    assert result.exit_code == 1 and "event 2" in result.output and "anchor" in result.output
    bad = cli("audit", "verify", "--anchor", "two:xyz")
    assert bad.exit_code == 2 and "SEQ:HASH" in bad.output


def test_a_deleted_head_is_never_silently_recreated(rt: Runtime) -> None:
    append(rt, 2)
    sql(rt, "DELETE FROM audit_heads")
    with pytest.raises(audit.AuditHeadMissing), rt.transaction() as session:
        audit.record(session, rt.crypto, "test.event", actor="tester")
    result = verify(rt)
    assert result.ok is False and "head is missing" in result.problem
