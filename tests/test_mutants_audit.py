"""dsar/audit.py's export and head, pinned to exact output: what an auditor's offline
check reads (sorted keys, text kept as UTF-8, the count returned) and what the head looks
like before the first event and without its row."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select, text

from dsar import audit
from dsar.clock import MovableClock
from dsar.models import AuditEvent, AuditHead
from dsar.runtime import Runtime

DETAILS: list[dict[str, Any]] = [{"zeta": "Zoë", "alpha": 1}, {"b": ["é", 2], "a": None}, {}]


def record_three(rt: Runtime) -> None:
    for index, details in enumerate(DETAILS):
        with rt.transaction() as session:
            audit.record(session, rt.crypto, "test.event", actor="tester",
                         request_id=f"r{index}", details=details)


def events(rt: Runtime) -> list[dict[str, object]]:
    with rt.transaction() as session:
        return list(audit.iter_events(session))


def test_jsonl_is_one_sorted_utf8_object_per_line_and_counted(rt: Runtime) -> None:
    record_three(rt)
    out = io.StringIO()
    with rt.transaction() as session:
        assert audit.export(session, out, "jsonl") == 3
    lines = out.getvalue().split("\n")
    assert lines[-1] == ""  # every line ends with a newline
    assert lines[:-1] == [json.dumps(row, sort_keys=True, ensure_ascii=False)
                          for row in events(rt)]
    assert '"zeta":"Zoë"' not in lines[0] and '"zeta": "Zoë"' in lines[0]
    assert list(json.loads(lines[0])) == sorted(audit.EXPORT_FIELDS)


def test_jsonl_is_the_default_format(rt: Runtime) -> None:
    record_three(rt)
    out = io.StringIO()
    with rt.transaction() as session:
        assert audit.export(session, out) == 3
    assert out.getvalue().count("\n") == 3


def test_csv_holds_the_fields_in_order_and_details_as_sorted_utf8_json(rt: Runtime) -> None:
    record_three(rt)
    out = io.StringIO()
    with rt.transaction() as session:
        assert audit.export(session, out, "csv") == 3
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == list(audit.EXPORT_FIELDS)
    assert [row[5] for row in rows[1:]] == [
        '{"alpha": 1, "zeta": "Zoë"}', '{"a": null, "b": ["é", 2]}', "{}"]
    for row, event in zip(rows[1:], events(rt), strict=True):
        assert row[0] == str(event["seq"]) and row[7] == event["hash"]


def test_an_empty_chain_exports_nothing(rt: Runtime) -> None:
    for fmt, written in (("jsonl", ""), ("csv", ",".join(audit.EXPORT_FIELDS) + "\r\n")):
        out = io.StringIO()
        with rt.transaction() as session:
            assert audit.export(session, out, fmt) == 0
        assert out.getvalue() == written


def test_an_unknown_format_is_refused_by_name(rt: Runtime) -> None:
    with rt.transaction() as session, pytest.raises(ValueError) as refused:
        audit.export(session, io.StringIO(), "xml")
    assert str(refused.value) == "unknown format 'xml': use jsonl or csv"


def test_the_head_names_the_last_event_and_is_sealed(rt: Runtime) -> None:
    with rt.transaction() as session:  # as the migration left it: no event, unsealed
        assert audit.head(session) == {"seq": 0, "hash": audit.GENESIS_HASH, "mac": ""}
    record_three(rt)
    last = events(rt)[-1]["hash"]
    with rt.transaction() as session:
        assert audit.head(session) == {
            "seq": 3, "hash": last, "mac": rt.crypto.audit_mac(f"head:3:{last}")}


def test_without_its_row_the_head_is_the_genesis_unsealed(rt: Runtime) -> None:
    record_three(rt)
    with rt.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_heads"))
    with rt.transaction() as session:
        assert audit.head(session) == {"seq": 0, "hash": "0" * 64, "mac": ""}


def verify(rt: Runtime, anchors: dict[int, str] | None = None) -> audit.Verification:
    with rt.transaction() as session:
        return audit.verify(session, rt.crypto, anchors)


def test_an_empty_chain_without_a_head_is_intact(rt: Runtime) -> None:
    with rt.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_heads"))
    assert verify(rt) == audit.Verification(True, 0)


def test_a_chain_without_its_head_is_broken(rt: Runtime) -> None:
    record_three(rt)
    with rt.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_heads"))
    assert verify(rt) == audit.Verification(False, 3, None, "the sealed head is missing")


def test_anchors_catch_a_replaced_or_missing_event(rt: Runtime) -> None:
    record_three(rt)
    assert verify(rt, {2: events(rt)[1]["hash"]}) == audit.Verification(True, 3)  # type: ignore[dict-item]
    assert verify(rt, {2: "f" * 64}) == audit.Verification(
        False, 1, 2, "differs from the anchor recorded outside the database")
    assert verify(rt, {5: "f" * 64}) == audit.Verification(
        False, 3, 5, "an anchored event is missing: the log was rolled back or truncated")


# The canonical text is what every stored hash was computed over: a change of its keys,
# their order, its separators, its escaping or its time zone makes every chain already
# written fail `dsar audit verify`, and an auditor's offline check with it.
CANONICAL = (
    '{"action":"request.verified","actor":"officer:zoë","details":{"a":"é","b":[1,2]},'
    '"occurred_at":"2026-06-15T12:00:00.000005Z","prev_hash":"' + "ab" * 32 + '",'
    '"request_id":"r-1","seq":7}')


def test_the_canonical_text_is_sorted_compact_utf8_json_in_utc() -> None:
    moment = datetime(2026, 6, 15, 14, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    assert audit.canonical(7, moment, "officer:zoë", "request.verified", "r-1",
                           '{"b": [1, 2], "a": "é"}', "ab" * 32) == CANONICAL


@pytest.fixture
def server_in_new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone five hours behind UTC (POSIX TZ: no tzdata needed)."""
    monkeypatch.setenv("TZ", "EST5")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_times_are_utc_whatever_the_servers_time_zone(rt: Runtime,
                                                       server_in_new_york: None) -> None:
    assert time.localtime(0).tm_hour == 19  # the zone took effect
    rt.clock = MovableClock(datetime(2026, 6, 15, 12, 0, 0, 5, tzinfo=UTC))
    with rt.transaction() as session:
        audit.record(session, rt.crypto, "request.verified", actor="officer:zoë",
                     request_id="r-1", details={"b": [1, 2], "a": "é"})
    [event] = events(rt)
    assert event["occurred_at"] == "2026-06-15T12:00:00.000005Z"
    with rt.transaction() as session:
        row = session.scalars(select(AuditEvent)).one()
        assert row.hash == hashlib.sha256(audit.canonical(
            row.seq, row.occurred_at, row.actor, row.action, row.request_id, row.details,
            row.prev_hash).encode()).hexdigest()
        assert '"occurred_at":"2026-06-15T12:00:00.000005Z"' in audit.canonical(
            row.seq, row.occurred_at, row.actor, row.action, row.request_id, row.details,
            row.prev_hash)


def test_details_are_stored_as_sorted_compact_json(rt: Runtime) -> None:
    """The row reads as the canonical text hashes it, whatever order the caller built
    the mapping in: the same details are the same text in the database."""
    with rt.transaction() as session:
        audit.record(session, rt.crypto, "test.event", actor="tester",
                     details={"zeta": 1, "alpha": {"y": 2, "x": 3}})
    with rt.transaction() as session:
        assert session.scalars(select(AuditEvent.details)).one() == \
            '{"alpha":{"x":3,"y":2},"zeta":1}'


def test_a_savepoints_event_is_chained_before_the_outer_transactions_earlier_ones(
        rt: Runtime) -> None:
    """The outer transaction's events wait for its commit (the head is locked late); a
    savepoint's are chained at once, so its rollback can take them."""
    with rt.transaction() as session:
        audit.record(session, rt.crypto, "test.outer", actor="t")
        with session.begin_nested():
            audit.record(session, rt.crypto, "test.inner", actor="t")
    assert [(e["seq"], e["action"]) for e in events(rt)] == [(1, "test.inner"),
                                                             (2, "test.outer")]


def test_a_missing_head_says_what_to_run(rt: Runtime) -> None:
    with rt.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_heads"))
    with pytest.raises(audit.AuditHeadMissing) as missing, rt.transaction() as session:
        audit.record(session, rt.crypto, "test.event", actor="tester")
    assert str(missing.value) == ("the audit head is missing: run `dsar db upgrade` on a new "
                                  "database; otherwise run `dsar audit verify`")


def test_a_head_row_held_across_an_append_reads_the_moved_head(rt: Runtime) -> None:
    """An AuditHead object loaded earlier in the transaction (and kept) is not left
    naming the old end of the chain once events are chained under it."""
    with rt.transaction() as session:
        held = session.get(AuditHead, audit.HEAD_ID)
        assert held is not None and held.seq == 0
        with session.begin_nested():
            audit.record(session, rt.crypto, "test.event", actor="tester")
        assert (held.seq, held.hash) == (1, session.scalars(select(AuditEvent.hash)).one())
        audit.record(session, rt.crypto, "test.event", actor="tester")
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 2
        assert held.seq == 2
